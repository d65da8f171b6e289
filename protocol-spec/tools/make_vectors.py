#!/usr/bin/env python3
"""Golden test vectors for the ITB programmer telemetry protocol, version 1.

Written from protocol-spec/PROTOCOL.md alone (standard library only), independently of the
Swift implementation, so that a misreading shared by both sides would show up as a mismatch.

Run from the repository root:

    python3 protocol-spec/tools/make_vectors.py

It writes protocol-spec/vectors.json. The output is deterministic: there is no randomness
(the "random-looking" bytes come from SHA-256 of fixed strings), dictionaries are built in a
fixed order and the file is written with json.dump(..., indent=1) plus a trailing newline.

The script checks itself before writing: the CRC-32C check value, the iSCSI CRC-32C test
vectors, that every "frames" vector decodes back to exactly its fields, that feeding every
stream byte by byte (and in uneven chunks) gives the same result as feeding it at once, and
the counter identity frames_accepted = frames_delivered + unknown_types + short_payloads.
"""

import datetime
import hashlib
import json
import os
import struct
import sys

# ---------------------------------------------------------------------------------------------
# §2.1 CRC-32C (Castagnoli), bit by bit
# ---------------------------------------------------------------------------------------------

CRC32C_POLY_REFLECTED = 0x82F63B78


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            if crc & 1:
                crc = (crc >> 1) ^ CRC32C_POLY_REFLECTED
            else:
                crc >>= 1
    return crc ^ 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283, "CRC-32C check value"
assert crc32c(b"") == 0x00000000, "CRC-32C of the empty string (spec §2)"
# RFC 3720 (iSCSI) appendix B.4 test vectors, an independent cross-check of the bit order.
assert crc32c(bytes(32)) == 0x8A9136AA
assert crc32c(b"\xff" * 32) == 0x62A8AB43
assert crc32c(bytes(range(32))) == 0x46DD794E
assert crc32c(bytes(range(31, -1, -1))) == 0x113FDB5C

# ---------------------------------------------------------------------------------------------
# §2 frame layout
# ---------------------------------------------------------------------------------------------

MAGIC = b"\xB7\xE1"
VERSION = 1
HEADER_SIZE = 16
TRAILER_SIZE = 4
MAX_PAYLOAD = 1024
INCOMPATIBLE_FLAGS_MASK = 0x0F
FLAG_RETRANSMISSION = 0x10
U32 = 0xFFFFFFFF

HEADER_STRUCT = struct.Struct("<2sBBHHI")  # magic, version, flags, type, length, sequence
assert HEADER_STRUCT.size == 12


def build_header(msg_type, length, seq, flags=0, version=VERSION, header_crc=None, magic=MAGIC):
    first12 = HEADER_STRUCT.pack(magic, version, flags, msg_type, length, seq)
    if header_crc is None:
        header_crc = crc32c(first12)
    return first12 + struct.pack("<I", header_crc)


def build_frame(msg_type, payload, seq, flags=0, version=VERSION, header_crc=None,
                payload_crc=None, length=None):
    if length is None:
        length = len(payload)
    header = build_header(msg_type, length, seq, flags=flags, version=version,
                          header_crc=header_crc)
    if payload_crc is None:
        payload_crc = crc32c(payload)
    return header + payload + struct.pack("<I", payload_crc)


# ---------------------------------------------------------------------------------------------
# §3 message types, §4 enumerations
# ---------------------------------------------------------------------------------------------

T_PROGRAMMER_INFO = 0x0001
T_PUMP_SESSION = 0x0002
T_PUMP_STATUS = 0x0003
T_RESERVOIR = 0x0004
T_DOSE_PROGRAM = 0x0005
T_REFILL = 0x0006
T_ALARM = 0x0007
T_HEARTBEAT = 0x0008
T_ACK = 0x0101
T_HOST_HEARTBEAT = 0x0102

TYPE_NAMES = {
    T_PROGRAMMER_INFO: "programmer_info",
    T_PUMP_SESSION: "pump_session",
    T_PUMP_STATUS: "pump_status",
    T_RESERVOIR: "reservoir",
    T_DOSE_PROGRAM: "dose_program",
    T_REFILL: "refill",
    T_ALARM: "alarm",
    T_HEARTBEAT: "heartbeat",
    T_ACK: "ack",
    T_HOST_HEARTBEAT: "host_heartbeat",
}

# Fixed minimum payload lengths (§3); DOSE_PROGRAM and ALARM are computed from their counts.
FIXED_MIN_LENGTH = {
    T_PROGRAMMER_INFO: 48,
    T_PUMP_SESSION: 56,
    T_PUMP_STATUS: 24,
    T_RESERVOIR: 40,
    T_DOSE_PROGRAM: 24,
    T_REFILL: 40,
    T_ALARM: 24,
    T_HEARTBEAT: 20,
    T_ACK: 12,
    T_HOST_HEARTBEAT: 12,
}

SESSION_EVENT = {1: "begin", 2: "end"}
BATTERY_STATE = {0: "ok", 1: "eri", 2: "eos"}
PUMP_STATE = {0: "infusing", 1: "stopped", 2: "minimum_rate", 3: "critical_alarm",
              4: "end_of_service"}
DOSING_MODE = {0: "simple_continuous", 1: "flex", 2: "periodic_bolus", 3: "single_bolus",
               4: "prime"}
VOLUME_SOURCE = {0: "calculated", 1: "measured"}
ALARM_CODE = {1: "low_reservoir", 2: "empty_reservoir", 3: "eri", 4: "eos", 5: "motor_stall",
              6: "low_battery_reset", 7: "memory_error", 8: "flow_fault"}
ALARM_PRIORITY = {1: "high", 2: "medium", 3: "low", 4: "info"}
ALARM_TRANSITION = {1: "raised", 2: "cleared"}
ACK_STATUS = {1: "stored", 2: "rejected"}

MAX_FLEX_STEPS = 13  # §5 DOSE_PROGRAM: "0–13 (more: the message is rejected as short)"
MAX_PERIODIC_BOLUSES = 24  # §5 DOSE_PROGRAM: "0–24 (more: rejected as short)"
MAX_DETAIL_LENGTH = 64  # §5 ALARM: "0–64 (more: rejected as short)"

# ---------------------------------------------------------------------------------------------
# §5 payload encoders. A message is a dict keyed by the spec's field names (with _ms / _x10);
# reserved fields are not in the dict and are sent as 0.
# ---------------------------------------------------------------------------------------------


def char_field(text, size):
    raw = text.encode("latin-1") if isinstance(text, str) else bytes(text)
    if len(raw) > size:
        raise ValueError(f"{text!r} does not fit char[{size}]")
    return raw + bytes(size - len(raw))


def enc_programmer_info(m):
    return (struct.pack("<QIHH", m["boot_id"], m["firmware_version"], m["protocol_minor"], 0)
            + char_field(m["programmer_serial"], 16) + char_field(m["hardware_model"], 16))


def enc_pump_session(m):
    return (struct.pack("<qqIHBB", m["implant_date_ms"], m["eri_date_ms"],
                        m["reservoir_capacity_ul"], m["manufacturer_code"], m["event"],
                        m["battery_state"])
            + char_field(m["pump_model"], 16) + char_field(m["pump_serial"], 16))


def enc_pump_status(m):
    return struct.pack("<qIIIBBBB", m["device_time_ms"], m["daily_dose_ug_x10"],
                       m["concentration_ug_per_ml"], m["active_alarm_mask"], m["pump_state"],
                       m["dosing_mode"], m["link_quality_pct"], 0)


def enc_reservoir(m):
    return (struct.pack("<qqIIIIB", m["device_time_ms"], m["last_refill_time_ms"],
                        m["volume_ul_x10"], m["capacity_ul"], m["low_reservoir_threshold_ul"],
                        m["delivered_since_refill_ul_x10"], m["volume_source"])
            + bytes(7))


def enc_dose_program(m, flex_step_count=None, periodic_bolus_count=None):
    steps = m["flex_steps"]
    boluses = m["periodic_boluses"]
    if flex_step_count is None:
        flex_step_count = len(steps)
    if periodic_bolus_count is None:
        periodic_bolus_count = len(boluses)
    out = struct.pack("<qIIHHBBBB", m["device_time_ms"], m["daily_dose_ug_x10"],
                      m["patient_bolus_dose_ug_x10"], m["patient_bolus_lockout_min"],
                      m["patient_bolus_max_per_day"], m["mode"], flex_step_count,
                      periodic_bolus_count, 0)
    for s in steps:
        out += struct.pack("<HHI", s["start_minute"], 0, s["rate_ug_per_day_x10"])
    for b in boluses:
        out += struct.pack("<HHI", b["start_minute"], b["duration_min"], b["dose_ug_x10"])
    return out


def enc_refill(m):
    return (struct.pack("<qIIII", m["refill_time_ms"], m["concentration_ug_per_ml"],
                        m["volume_filled_ul"], m["expected_residual_ul"],
                        m["measured_residual_ul"])
            + char_field(m["drug_lot"], 16))


def enc_alarm(m, detail_length=None):
    detail = m["detail"].encode("latin-1") if isinstance(m["detail"], str) else bytes(m["detail"])
    if detail_length is None:
        detail_length = len(detail)
    return (struct.pack("<qIHBBB", m["onset_time_ms"], m["alarm_id"], m["code"], m["priority"],
                        m["transition"], detail_length)
            + bytes(7) + detail)


def enc_heartbeat(m, with_reserved=True):
    out = struct.pack("<QIII", m["boot_id"], m["uptime_s"], m["highest_alarm_id"],
                      m["unacked_alarm_count"])
    if with_reserved:
        out += struct.pack("<I", 0)
    return out


def enc_ack(m):
    return struct.pack("<IIHBB", m["acked_seq"], m["alarm_id"], m["acked_type"], m["status"], 0)


def enc_host_heartbeat(m, with_reserved=True):
    out = struct.pack("<qI", m["host_time_ms"], m["uptime_s"])
    if with_reserved:
        out += struct.pack("<I", 0)
    return out


ENCODERS = {
    T_PROGRAMMER_INFO: enc_programmer_info,
    T_PUMP_SESSION: enc_pump_session,
    T_PUMP_STATUS: enc_pump_status,
    T_RESERVOIR: enc_reservoir,
    T_DOSE_PROGRAM: enc_dose_program,
    T_REFILL: enc_refill,
    T_ALARM: enc_alarm,
    T_HEARTBEAT: enc_heartbeat,
    T_ACK: enc_ack,
    T_HOST_HEARTBEAT: enc_host_heartbeat,
}

# ---------------------------------------------------------------------------------------------
# §5 payload parsers (receiver side): payload bytes -> the same kind of dict the encoders take.
# Called only after the minimum-length check has passed; trailing bytes are ignored (§2.6).
# ---------------------------------------------------------------------------------------------


def char_text(raw: bytes) -> str:
    """char[N]: the text ends at the first NUL (§1). Every byte is kept (latin-1 is a 1:1
    byte-to-code-point mapping); how bytes outside 0x20-0x7E are "shown escaped" is left to
    the JSON encoder (the vectors contain only printable ASCII)."""
    nul = raw.find(b"\x00")
    if nul >= 0:
        raw = raw[:nul]
    return raw.decode("latin-1")


def dec_programmer_info(p):
    boot_id, fw, minor, _res = struct.unpack_from("<QIHH", p, 0)
    return {"boot_id": boot_id, "firmware_version": fw, "protocol_minor": minor,
            "programmer_serial": char_text(p[16:32]), "hardware_model": char_text(p[32:48])}


def dec_pump_session(p):
    implant, eri, cap, manu, event, batt = struct.unpack_from("<qqIHBB", p, 0)
    return {"implant_date_ms": implant, "eri_date_ms": eri, "reservoir_capacity_ul": cap,
            "manufacturer_code": manu, "event": event, "battery_state": batt,
            "pump_model": char_text(p[24:40]), "pump_serial": char_text(p[40:56])}


def dec_pump_status(p):
    t, dose, conc, mask, state, mode, link, _res = struct.unpack_from("<qIIIBBBB", p, 0)
    return {"device_time_ms": t, "daily_dose_ug_x10": dose, "concentration_ug_per_ml": conc,
            "active_alarm_mask": mask, "pump_state": state, "dosing_mode": mode,
            "link_quality_pct": link}


def dec_reservoir(p):
    t, refill, vol, cap, thr, deliv, src = struct.unpack_from("<qqIIIIB", p, 0)
    return {"device_time_ms": t, "last_refill_time_ms": refill, "volume_ul_x10": vol,
            "capacity_ul": cap, "low_reservoir_threshold_ul": thr,
            "delivered_since_refill_ul_x10": deliv, "volume_source": src}


def dec_dose_program(p):
    (t, dose, bolus, lockout, maxday, mode, nsteps, nbol, _res) = struct.unpack_from(
        "<qIIHHBBBB", p, 0)
    steps = []
    off = 24
    for _ in range(nsteps):
        start, _r, rate = struct.unpack_from("<HHI", p, off)
        steps.append({"start_minute": start, "rate_ug_per_day_x10": rate})
        off += 8
    boluses = []
    for _ in range(nbol):
        start, dur, d = struct.unpack_from("<HHI", p, off)
        boluses.append({"start_minute": start, "duration_min": dur, "dose_ug_x10": d})
        off += 8
    return {"device_time_ms": t, "daily_dose_ug_x10": dose, "patient_bolus_dose_ug_x10": bolus,
            "patient_bolus_lockout_min": lockout, "patient_bolus_max_per_day": maxday,
            "mode": mode, "flex_steps": steps, "periodic_boluses": boluses}


def dec_refill(p):
    t, conc, filled, expected, measured = struct.unpack_from("<qIIII", p, 0)
    return {"refill_time_ms": t, "concentration_ug_per_ml": conc, "volume_filled_ul": filled,
            "expected_residual_ul": expected, "measured_residual_ul": measured,
            "drug_lot": char_text(p[24:40])}


def dec_alarm(p):
    t, alarm_id, code, prio, trans, dlen = struct.unpack_from("<qIHBBB", p, 0)
    return {"onset_time_ms": t, "alarm_id": alarm_id, "code": code, "priority": prio,
            "transition": trans, "detail": char_text(p[24:24 + dlen])}


def dec_heartbeat(p):
    boot_id, up, highest, unacked = struct.unpack_from("<QIII", p, 0)
    return {"boot_id": boot_id, "uptime_s": up, "highest_alarm_id": highest,
            "unacked_alarm_count": unacked}


def dec_ack(p):
    seq, alarm_id, acked_type, status = struct.unpack_from("<IIHB", p, 0)
    return {"acked_seq": seq, "alarm_id": alarm_id, "acked_type": acked_type, "status": status}


def dec_host_heartbeat(p):
    t, up = struct.unpack_from("<qI", p, 0)
    return {"host_time_ms": t, "uptime_s": up}


DECODERS = {
    T_PROGRAMMER_INFO: dec_programmer_info,
    T_PUMP_SESSION: dec_pump_session,
    T_PUMP_STATUS: dec_pump_status,
    T_RESERVOIR: dec_reservoir,
    T_DOSE_PROGRAM: dec_dose_program,
    T_REFILL: dec_refill,
    T_ALARM: dec_alarm,
    T_HEARTBEAT: dec_heartbeat,
    T_ACK: dec_ack,
    T_HOST_HEARTBEAT: dec_host_heartbeat,
}


def payload_is_short(msg_type, p):
    """§3 / §5 minimum payload lengths. True means: count as short_payloads and skip."""
    n = len(p)
    if n < FIXED_MIN_LENGTH[msg_type]:
        return True
    if msg_type == T_DOSE_PROGRAM:
        nsteps, nbol = p[21], p[22]
        if nsteps > MAX_FLEX_STEPS or nbol > MAX_PERIODIC_BOLUSES:
            return True
        return n < 24 + 8 * (nsteps + nbol)
    if msg_type == T_ALARM:
        if p[16] > MAX_DETAIL_LENGTH:
            return True
        return n < 24 + p[16]
    return False


# ---------------------------------------------------------------------------------------------
# §7 JSON rendering
# ---------------------------------------------------------------------------------------------

EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


# RFC 3339 shows years 0001-9999 only; a time outside renders as null with its raw value (§7).
TIME_MIN_MS = -62_135_596_800_000
TIME_MAX_MS = 253_402_300_799_999


def render_time(ms):
    if ms == 0 or not TIME_MIN_MS <= ms <= TIME_MAX_MS:
        return None
    dt = EPOCH + datetime.timedelta(milliseconds=ms)
    return f"{dt:%Y-%m-%dT%H:%M:%S}.{dt.microsecond // 1000:03d}Z"


def put_time(out, field, ms):
    out[field] = render_time(ms)
    if ms != 0 and not TIME_MIN_MS <= ms <= TIME_MAX_MS:
        out[field + "_raw"] = ms


def render_x10(raw):
    return raw / 10


def put_enum(out, field, raw, names):
    if raw in names:
        out[field] = names[raw]
    else:
        out[field] = "unknown"
        out[field + "_raw"] = raw


def render_alarm_mask(mask):
    names = []
    for k in range(32):
        if mask >> k & 1:
            names.append(ALARM_CODE.get(k + 1, f"unknown_{k + 1}"))
    return names


def render_fields(msg_type, m):
    out = {}
    if msg_type == T_PROGRAMMER_INFO:
        fw = m["firmware_version"]
        out["boot_id"] = f"{m['boot_id']:016x}"
        out["firmware_version"] = f"{fw >> 16}.{fw >> 8 & 0xFF}.{fw & 0xFF}"
        out["protocol_minor"] = m["protocol_minor"]
        out["programmer_serial"] = m["programmer_serial"]
        out["hardware_model"] = m["hardware_model"]
    elif msg_type == T_PUMP_SESSION:
        put_time(out, "implant_date", m["implant_date_ms"])
        put_time(out, "eri_date", m["eri_date_ms"])
        out["reservoir_capacity_ul"] = m["reservoir_capacity_ul"]
        out["manufacturer_code"] = m["manufacturer_code"]
        put_enum(out, "event", m["event"], SESSION_EVENT)
        put_enum(out, "battery_state", m["battery_state"], BATTERY_STATE)
        out["pump_model"] = m["pump_model"]
        out["pump_serial"] = m["pump_serial"]
    elif msg_type == T_PUMP_STATUS:
        put_time(out, "device_time", m["device_time_ms"])
        out["daily_dose_ug"] = render_x10(m["daily_dose_ug_x10"])
        out["concentration_ug_per_ml"] = m["concentration_ug_per_ml"]
        out["active_alarm_mask"] = m["active_alarm_mask"]
        out["active_alarms"] = render_alarm_mask(m["active_alarm_mask"])
        put_enum(out, "pump_state", m["pump_state"], PUMP_STATE)
        put_enum(out, "dosing_mode", m["dosing_mode"], DOSING_MODE)
        link = m["link_quality_pct"]
        out["link_quality_pct"] = None if link == 255 else link
    elif msg_type == T_RESERVOIR:
        put_time(out, "device_time", m["device_time_ms"])
        put_time(out, "last_refill_time", m["last_refill_time_ms"])
        out["volume_ul"] = render_x10(m["volume_ul_x10"])
        out["capacity_ul"] = m["capacity_ul"]
        out["low_reservoir_threshold_ul"] = m["low_reservoir_threshold_ul"]
        out["delivered_since_refill_ul"] = render_x10(m["delivered_since_refill_ul_x10"])
        put_enum(out, "volume_source", m["volume_source"], VOLUME_SOURCE)
    elif msg_type == T_DOSE_PROGRAM:
        put_time(out, "device_time", m["device_time_ms"])
        out["daily_dose_ug"] = render_x10(m["daily_dose_ug_x10"])
        out["patient_bolus_dose_ug"] = render_x10(m["patient_bolus_dose_ug_x10"])
        out["patient_bolus_lockout_min"] = m["patient_bolus_lockout_min"]
        out["patient_bolus_max_per_day"] = m["patient_bolus_max_per_day"]
        put_enum(out, "mode", m["mode"], DOSING_MODE)
        out["flex_steps"] = [
            {"start_minute": s["start_minute"],
             "rate_ug_per_day": render_x10(s["rate_ug_per_day_x10"])}
            for s in m["flex_steps"]]
        out["periodic_boluses"] = [
            {"start_minute": b["start_minute"], "duration_min": b["duration_min"],
             "dose_ug": render_x10(b["dose_ug_x10"])}
            for b in m["periodic_boluses"]]
    elif msg_type == T_REFILL:
        put_time(out, "refill_time", m["refill_time_ms"])
        out["concentration_ug_per_ml"] = m["concentration_ug_per_ml"]
        out["volume_filled_ul"] = m["volume_filled_ul"]
        out["expected_residual_ul"] = m["expected_residual_ul"]
        out["measured_residual_ul"] = m["measured_residual_ul"]
        out["drug_lot"] = m["drug_lot"]
    elif msg_type == T_ALARM:
        out["alarm_id"] = m["alarm_id"]
        out["code"] = ALARM_CODE.get(m["code"], "unknown")
        out["code_raw"] = m["code"]
        put_enum(out, "priority", m["priority"], ALARM_PRIORITY)
        put_enum(out, "transition", m["transition"], ALARM_TRANSITION)
        put_time(out, "onset_time", m["onset_time_ms"])
        detail = m["detail"]
        if isinstance(detail, (bytes, bytearray)):
            detail = char_text(bytes(detail))
        out["detail"] = detail
    elif msg_type == T_HEARTBEAT:
        out["boot_id"] = f"{m['boot_id']:016x}"
        out["uptime_s"] = m["uptime_s"]
        out["highest_alarm_id"] = m["highest_alarm_id"]
        out["unacked_alarm_count"] = m["unacked_alarm_count"]
    elif msg_type == T_ACK:
        out["acked_seq"] = m["acked_seq"]
        out["alarm_id"] = m["alarm_id"]
        put_enum(out, "acked_type", m["acked_type"], TYPE_NAMES)
        put_enum(out, "status", m["status"], ACK_STATUS)
    elif msg_type == T_HOST_HEARTBEAT:
        put_time(out, "host_time", m["host_time_ms"])
        out["uptime_s"] = m["uptime_s"]
    else:
        raise ValueError(f"no renderer for type 0x{msg_type:04x}")
    return out


# ---------------------------------------------------------------------------------------------
# §2.2 / §2.3 / §6 reference streaming decoder
# ---------------------------------------------------------------------------------------------

COUNTER_KEYS = [
    "bytes_received",
    "bytes_discarded",
    "header_rejects_version",
    "header_rejects_incompatible_flags",
    "header_rejects_length",
    "header_rejects_header_crc",
    "payload_crc_errors",
    "frames_accepted",
    "frames_delivered",
    "sequence_gaps",
    "duplicates",
    "unknown_types",
    "short_payloads",
]


class Decoder:
    """Receiver per §2.2. feed() may be called with any split of the byte stream; bytes that
    could still begin a frame (an incomplete frame, or a lone trailing 0xB7) stay pending and
    are not counted as discarded."""

    def __init__(self):
        self.buf = bytearray()
        self.counters = {k: 0 for k in COUNTER_KEYS}
        self.last_seq = None
        self.delivered = []

    def _discard(self, n):
        del self.buf[:n]
        self.counters["bytes_discarded"] += n

    def feed(self, data):
        self.counters["bytes_received"] += len(data)
        self.buf += data
        c = self.counters
        while True:
            # 1. search for the magic
            idx = self.buf.find(MAGIC)
            if idx < 0:
                keep = 1 if self.buf[-1:] == MAGIC[:1] else 0
                self._discard(len(self.buf) - keep)
                return
            if idx:
                self._discard(idx)
            # 2. the header, once 16 bytes from the magic on are here
            if len(self.buf) < HEADER_SIZE:
                return
            _m, version, flags, msg_type, length, seq = HEADER_STRUCT.unpack_from(self.buf, 0)
            (header_crc,) = struct.unpack_from("<I", self.buf, 12)
            reason = None
            if version != VERSION:
                reason = "header_rejects_version"
            elif flags & INCOMPATIBLE_FLAGS_MASK:
                reason = "header_rejects_incompatible_flags"
            elif length > MAX_PAYLOAD:
                reason = "header_rejects_length"
            elif header_crc != crc32c(bytes(self.buf[:12])):
                reason = "header_rejects_header_crc"
            if reason is not None:
                c[reason] += 1
                self._discard(1)
                continue
            # 3. the whole frame
            total = HEADER_SIZE + length + TRAILER_SIZE
            if len(self.buf) < total:
                return
            payload = bytes(self.buf[HEADER_SIZE:HEADER_SIZE + length])
            (payload_crc,) = struct.unpack_from("<I", self.buf, HEADER_SIZE + length)
            if payload_crc != crc32c(payload):
                c["payload_crc_errors"] += 1
                self._discard(total)
                continue
            del self.buf[:total]
            # 4. accepted: sequence tracking (§2.3), then type and minimum length
            c["frames_accepted"] += 1
            if self.last_seq is not None:
                if seq == (self.last_seq + 1) & U32:
                    pass
                elif seq == self.last_seq:
                    c["duplicates"] += 1
                else:
                    c["sequence_gaps"] += 1
            self.last_seq = seq
            if msg_type not in TYPE_NAMES:
                c["unknown_types"] += 1
                continue
            if payload_is_short(msg_type, payload):
                c["short_payloads"] += 1
                continue
            c["frames_delivered"] += 1
            self.delivered.append({
                "type": TYPE_NAMES[msg_type],
                "type_id": msg_type,
                "seq": seq,
                "flags": flags,
                "fields": render_fields(msg_type, DECODERS[msg_type](payload)),
            })


def decode(data, chunk_sizes=None):
    """Decode a whole byte string. Returns (delivered frames, counters)."""
    d = Decoder()
    if chunk_sizes is None:
        d.feed(bytes(data))
    else:
        pos = 0
        i = 0
        while pos < len(data):
            n = chunk_sizes[i % len(chunk_sizes)]
            d.feed(bytes(data[pos:pos + n]))
            pos += n
            i += 1
    c = d.counters
    assert c["frames_accepted"] == c["frames_delivered"] + c["unknown_types"] + c["short_payloads"]
    assert c["bytes_received"] == len(data)
    # Every received byte is consumed in a frame, discarded, or still pending.
    return d.delivered, dict(c), len(d.buf)


def summary(delivered):
    return [{"type": f["type"], "seq": f["seq"]} for f in delivered]


# ---------------------------------------------------------------------------------------------
# Realistic content
# ---------------------------------------------------------------------------------------------


def ms(year, month, day, hour=0, minute=0, second=0, milli=0):
    dt = datetime.datetime(year, month, day, hour, minute, second, tzinfo=datetime.timezone.utc)
    return int((dt - EPOCH).total_seconds()) * 1000 + milli


def fw(major, minor, patch):
    return major << 16 | minor << 8 | patch


def pseudo_random(label, n):
    """Deterministic random-looking bytes (SHA-256 in counter mode)."""
    out = b""
    counter = 0
    while len(out) < n:
        out += hashlib.sha256(f"{label}/{counter}".encode()).digest()
        counter += 1
    return out[:n]


def garbage(label, n):
    """Random-looking bytes that contain no B7 at all (so no B7 E1 pair, and nothing that
    could combine with the following bytes into a magic)."""
    raw = pseudo_random(label, n * 2)
    out = bytes(b for b in raw if b != 0xB7)[:n]
    assert len(out) == n and MAGIC not in out and 0xB7 not in out
    return out


BOOT_ID = 0x3F9A1C2E5B7D4E61
BOOT_ID_2 = 0x8C04D2A7E91F3B05
NOW = ms(2026, 3, 14, 9, 26, 53, 589)

PROGRAMMER_INFO = {
    "boot_id": BOOT_ID, "firmware_version": fw(2, 4, 1), "protocol_minor": 0,
    "programmer_serial": "PGM-000123", "hardware_model": "ITB-CP 8840",
}
# Minor revision 1 (PROTOCOL.md §2.5): during a pump session the programmer re-sends the
# session's PUMP_SESSION begin right after every PROGRAMMER_INFO.
PROGRAMMER_INFO_MINOR_1 = dict(PROGRAMMER_INFO, protocol_minor=1, firmware_version=fw(2, 5, 0))
PUMP_SESSION_BEGIN = {
    "implant_date_ms": ms(2025, 2, 11, 14, 5, 0), "eri_date_ms": 0,
    "reservoir_capacity_ul": 40000, "manufacturer_code": 1, "event": 1, "battery_state": 0,
    "pump_model": "SynchroMed II", "pump_serial": "NGP104857H",
}
PUMP_SESSION_END_ERI = {
    "implant_date_ms": ms(2025, 2, 11, 14, 5, 0), "eri_date_ms": ms(2026, 1, 30, 3, 0, 0),
    "reservoir_capacity_ul": 20000, "manufacturer_code": 1, "event": 2, "battery_state": 1,
    "pump_model": "SynchroMed II", "pump_serial": "NGP098231H",
}
PUMP_SESSION_UNKNOWN = {
    "implant_date_ms": 0, "eri_date_ms": 0, "reservoir_capacity_ul": 0,
    "manufacturer_code": 7, "event": 3, "battery_state": 9,
    "pump_model": "Prometra II", "pump_serial": "PR-77120",
}
PUMP_STATUS = {
    "device_time_ms": NOW, "daily_dose_ug_x10": 4000, "concentration_ug_per_ml": 2000,
    "active_alarm_mask": 0, "pump_state": 0, "dosing_mode": 0, "link_quality_pct": 87,
}
PUMP_STATUS_LOW_RES = {
    "device_time_ms": ms(2026, 4, 20, 16, 0, 1, 7), "daily_dose_ug_x10": 4125,
    "concentration_ug_per_ml": 2000, "active_alarm_mask": 0b1, "pump_state": 0,
    "dosing_mode": 1, "link_quality_pct": 255,
}
PUMP_STATUS_UNKNOWN = {
    "device_time_ms": ms(2026, 5, 2, 7, 45, 30, 250), "daily_dose_ug_x10": 1500,
    "concentration_ug_per_ml": 500, "active_alarm_mask": (1 << 0) | (1 << 4) | (1 << 11),
    "pump_state": 9, "dosing_mode": 7, "link_quality_pct": 100,
}
RESERVOIR = {
    "device_time_ms": NOW, "last_refill_time_ms": ms(2026, 2, 3, 10, 30, 0),
    "volume_ul_x10": 319874, "capacity_ul": 40000, "low_reservoir_threshold_ul": 2000,
    "delivered_since_refill_ul_x10": 80126, "volume_source": 0,
}
RESERVOIR_UNKNOWN = {
    "device_time_ms": ms(2025, 12, 31, 23, 59, 59, 999), "last_refill_time_ms": 0,
    "volume_ul_x10": 20000, "capacity_ul": 0, "low_reservoir_threshold_ul": 0,
    "delivered_since_refill_ul_x10": 0, "volume_source": 5,
}
DOSE_PROGRAM_SIMPLE = {
    "device_time_ms": NOW, "daily_dose_ug_x10": 4000, "patient_bolus_dose_ug_x10": 0,
    "patient_bolus_lockout_min": 0, "patient_bolus_max_per_day": 0, "mode": 0,
    "flex_steps": [], "periodic_boluses": [],
}
FLEX_RATES = [3500, 3500, 3600, 4000, 4200, 4500, 4500, 4200, 4000, 3800, 4000, 4400, 3600]
DOSE_PROGRAM_FLEX = {
    "device_time_ms": ms(2026, 6, 1, 8, 15, 0, 120), "daily_dose_ug_x10": 4125,
    "patient_bolus_dose_ug_x10": 500, "patient_bolus_lockout_min": 120,
    "patient_bolus_max_per_day": 4, "mode": 1,
    "flex_steps": [{"start_minute": i * 110, "rate_ug_per_day_x10": r}
                   for i, r in enumerate(FLEX_RATES)],
    "periodic_boluses": [
        {"start_minute": 480, "duration_min": 15, "dose_ug_x10": 250},
        {"start_minute": 1260, "duration_min": 30, "dose_ug_x10": 375},
    ],
}
DOSE_PROGRAM_UNKNOWN_MODE = {
    "device_time_ms": 0, "daily_dose_ug_x10": 2000, "patient_bolus_dose_ug_x10": 0,
    "patient_bolus_lockout_min": 0, "patient_bolus_max_per_day": 0, "mode": 12,
    "flex_steps": [{"start_minute": 0, "rate_ug_per_day_x10": 2000}], "periodic_boluses": [],
}
REFILL = {
    "refill_time_ms": ms(2026, 2, 3, 10, 30, 0), "concentration_ug_per_ml": 2000,
    "volume_filled_ul": 40000, "expected_residual_ul": 4120, "measured_residual_ul": 3950,
    "drug_lot": "LOT24A117",
}
ALARM_LOW_RES = {
    "onset_time_ms": ms(2026, 4, 20, 15, 59, 58, 412), "alarm_id": 57, "code": 1,
    "priority": 2, "transition": 1, "detail": "reservoir 1998 uL, LRA 2000 uL",
}
ALARM_CLEARED = {
    "onset_time_ms": ms(2026, 4, 22, 11, 2, 3, 4), "alarm_id": 58, "code": 1,
    "priority": 2, "transition": 2, "detail": "",
}
ALARM_UNKNOWN = {
    "onset_time_ms": ms(2026, 7, 9, 1, 2, 3, 45), "alarm_id": 61, "code": 0x0042,
    "priority": 1, "transition": 1, "detail": "vendor fault 0x42: valve",
}
ALARM_UNKNOWN_ENUMS = {
    "onset_time_ms": 0, "alarm_id": 62, "code": 5, "priority": 9, "transition": 7,
    "detail": "motor stall at 03:00",
}
ALARM_MAGIC_IN_DETAIL = {
    "onset_time_ms": ms(2026, 8, 1, 12, 0, 0, 0), "alarm_id": 63, "code": 8,
    "priority": 1, "transition": 1, "detail": b"flow fault \xb7\xe1\x01\x00 code",
}
HEARTBEAT = {
    "boot_id": BOOT_ID, "uptime_s": 3600, "highest_alarm_id": 57, "unacked_alarm_count": 1,
}
HEARTBEAT_MIN = {
    "boot_id": BOOT_ID_2, "uptime_s": 12, "highest_alarm_id": 0, "unacked_alarm_count": 0,
}
ACK = {"acked_seq": 1042, "alarm_id": 57, "acked_type": T_ALARM, "status": 1}
ACK_REJECTED = {"acked_seq": 1043, "alarm_id": 58, "acked_type": T_ALARM, "status": 2}
ACK_UNKNOWN = {"acked_seq": 77, "alarm_id": 0, "acked_type": 0x0042, "status": 9}
HOST_HEARTBEAT = {"host_time_ms": ms(2026, 3, 14, 9, 26, 54, 1), "uptime_s": 86400}


def hb_frame(seq, flags=0):
    return build_frame(T_HEARTBEAT, enc_heartbeat(HEARTBEAT), seq, flags)


# ---------------------------------------------------------------------------------------------
# Vector builders
# ---------------------------------------------------------------------------------------------


def crc_vectors():
    header_like = build_header(T_HEARTBEAT, 24, 1000)[:12]
    pattern = bytes((i * 7 + 3) & 0xFF for i in range(1024))
    cases = [
        ("check_value_123456789", b"123456789"),
        ("empty", b""),
        ("one_byte_00", b"\x00"),
        ("one_byte_b7", b"\xb7"),
        ("header_12_bytes_heartbeat", header_like),
        ("zeros_32", bytes(32)),
        ("ones_32", b"\xff" * 32),
        ("incrementing_32", bytes(range(32))),
        ("pattern_1024_i_times_7_plus_3", pattern),
    ]
    out = [{"name": n, "input_hex": d.hex(), "crc": crc32c(d)} for n, d in cases]
    assert out[0]["crc"] == 0xE3069283
    return out


def frame_vectors():
    specs = []  # (name, type, message, payload, seq, flags)

    def add(name, msg_type, message, seq, flags=0, payload=None):
        if payload is None:
            payload = ENCODERS[msg_type](message)
        specs.append((name, msg_type, message, payload, seq, flags))

    add("programmer_info", T_PROGRAMMER_INFO, PROGRAMMER_INFO, 1000)
    add("programmer_info_protocol_minor_1", T_PROGRAMMER_INFO, PROGRAMMER_INFO_MINOR_1, 1026)
    add("pump_session_begin", T_PUMP_SESSION, PUMP_SESSION_BEGIN, 1001)
    add("pump_session_end_eri_20ml", T_PUMP_SESSION, PUMP_SESSION_END_ERI, 1002)
    add("pump_session_unknown_event_and_battery_state", T_PUMP_SESSION, PUMP_SESSION_UNKNOWN,
        1003)
    add("pump_status", T_PUMP_STATUS, PUMP_STATUS, 1004)
    add("pump_status_low_reservoir_link_absent", T_PUMP_STATUS, PUMP_STATUS_LOW_RES, 1005)
    add("pump_status_unknown_state_mode_and_mask_bit", T_PUMP_STATUS, PUMP_STATUS_UNKNOWN, 1006)
    add("pump_status_8_trailing_bytes_newer_minor", T_PUMP_STATUS, PUMP_STATUS, 1007,
        payload=enc_pump_status(PUMP_STATUS) + bytes.fromhex("0102030405060708"))
    add("reservoir", T_RESERVOIR, RESERVOIR, 1008)
    add("reservoir_unknown_source_absent_values", T_RESERVOIR, RESERVOIR_UNKNOWN, 1009)
    add("dose_program_simple_zero_steps", T_DOSE_PROGRAM, DOSE_PROGRAM_SIMPLE, 1010)
    add("dose_program_flex_13_steps_2_boluses", T_DOSE_PROGRAM, DOSE_PROGRAM_FLEX, 1011)
    add("dose_program_unknown_mode", T_DOSE_PROGRAM, DOSE_PROGRAM_UNKNOWN_MODE, 1012)
    add("refill", T_REFILL, REFILL, 1013)
    add("alarm_low_reservoir_raised", T_ALARM, ALARM_LOW_RES, 1014)
    add("alarm_low_reservoir_retransmission", T_ALARM, ALARM_LOW_RES, 1015,
        flags=FLAG_RETRANSMISSION)
    add("alarm_cleared_empty_detail", T_ALARM, ALARM_CLEARED, 1016)
    add("alarm_unknown_code_0x0042", T_ALARM, ALARM_UNKNOWN, 1017)
    add("alarm_unknown_priority_and_transition", T_ALARM, ALARM_UNKNOWN_ENUMS, 1018)
    add("heartbeat", T_HEARTBEAT, HEARTBEAT, 1019)
    add("heartbeat_minimum_20_bytes", T_HEARTBEAT, HEARTBEAT_MIN, 1020,
        payload=enc_heartbeat(HEARTBEAT_MIN, with_reserved=False))
    add("heartbeat_unknown_compatible_flag_0x20", T_HEARTBEAT, HEARTBEAT, 1021, flags=0x20)
    add("heartbeat_retransmission_and_unknown_compatible_flags_0xf0", T_HEARTBEAT, HEARTBEAT,
        0xFFFFFFFF, flags=0xF0)
    trailing = bytes((i * 13 + 5) & 0xFF for i in range(MAX_PAYLOAD - 48))
    add("programmer_info_max_length_1024", T_PROGRAMMER_INFO, PROGRAMMER_INFO, 0,
        payload=enc_programmer_info(PROGRAMMER_INFO) + trailing)
    # Extremes with valid CRCs (§1, §7): bytes outside 0x20-0x7E kept and shown escaped, times
    # RFC 3339 cannot show rendered null with their raw value.
    add("programmer_info_bytes_43_50_01_58_e9_kept", T_PROGRAMMER_INFO,
        {**PROGRAMMER_INFO, "hardware_model": "CP\x01X\xe9"}, 1022)
    add("alarm_detail_byte_b0_kept", T_ALARM, {**ALARM_LOW_RES, "alarm_id": 59, "detail": "T 38\xb0C"}, 1023)
    add("pump_status_device_time_i64_min", T_PUMP_STATUS, {**PUMP_STATUS, "device_time_ms": -(2 ** 63)}, 1024)
    add("reservoir_times_i64_max", T_RESERVOIR,
        {**RESERVOIR, "device_time_ms": 2 ** 63 - 1, "last_refill_time_ms": 2 ** 63 - 1}, 1025)
    add("ack_stored", T_ACK, ACK, 500)
    add("ack_rejected", T_ACK, ACK_REJECTED, 501)
    add("ack_unknown_acked_type_and_status", T_ACK, ACK_UNKNOWN, 502)
    add("host_heartbeat", T_HOST_HEARTBEAT, HOST_HEARTBEAT, 503)
    add("host_heartbeat_minimum_12_bytes", T_HOST_HEARTBEAT, HOST_HEARTBEAT, 504,
        payload=enc_host_heartbeat(HOST_HEARTBEAT, with_reserved=False))

    out = []
    for name, msg_type, message, payload, seq, flags in specs:
        frame = build_frame(msg_type, payload, seq, flags)
        expected = render_fields(msg_type, message)
        delivered, counters, pending = decode(frame)
        assert pending == 0 and counters["bytes_discarded"] == 0, name
        assert len(delivered) == 1, name
        got = delivered[0]
        assert got["type_id"] == msg_type and got["seq"] == seq and got["flags"] == flags, name
        assert got["fields"] == expected, (name, got["fields"], expected)
        assert len(frame) == HEADER_SIZE + len(payload) + TRAILER_SIZE
        out.append({"name": name, "hex": frame.hex(), "type": TYPE_NAMES[msg_type],
                    "type_id": msg_type, "seq": seq, "flags": flags, "fields": expected})
    assert {v["type"] for v in out} == set(TYPE_NAMES.values())
    assert max(len(v["hex"]) // 2 for v in out) == 1044
    return out


def check_stream(data, name):
    """Decode at once, byte by byte and in uneven chunks; all must agree."""
    ref = decode(data)
    for chunks in ([1], [2], [3, 7], [16], [17, 1, 5], [1044]):
        assert decode(data, chunks) == ref, (name, chunks)
    return ref


def stream_entry(name, data, extra=None):
    delivered, counters, pending = check_stream(data, name)
    entry = {"name": name}
    if extra:
        entry.update(extra)
    entry.update({"hex": data.hex(), "delivered": summary(delivered), "counters": counters})
    return entry, delivered, counters, pending


def negative_vectors():
    out = []
    hb_len = len(hb_frame(0))

    def neg(name, reason, bad, hb_seq, expect):
        data = bad + hb_frame(hb_seq)
        entry, delivered, counters, pending = stream_entry(name, data, {"reason": reason})
        assert pending == 0, name
        assert summary(delivered) == [{"type": "heartbeat", "seq": hb_seq}], name
        assert delivered[0]["fields"] == render_fields(T_HEARTBEAT, HEARTBEAT)
        for k, v in expect.items():
            assert counters[k] == v, (name, k, counters[k], v)
        assert counters["bytes_received"] == len(bad) + hb_len
        out.append(entry)

    # garbage: 37 bytes, no B7 E1 pair
    g = garbage("negative/garbage", 37)
    neg("garbage_37_bytes", "garbage", g, 1, {"bytes_discarded": 37, "frames_accepted": 1})

    # version: a whole, otherwise valid PUMP_STATUS frame with version byte 2
    bad = build_frame(T_PUMP_STATUS, enc_pump_status(PUMP_STATUS), 10, version=2)
    assert MAGIC not in bad[1:]
    neg("version_2_frame", "version", bad, 11,
        {"header_rejects_version": 1, "bytes_discarded": len(bad), "frames_accepted": 1})

    # incompatible flags: bit 0 set, header CRC correct
    bad = build_frame(T_PUMP_STATUS, enc_pump_status(PUMP_STATUS), 20, flags=0x01)
    assert MAGIC not in bad[1:]
    neg("incompatible_flag_bit_0", "incompatible_flags", bad, 21,
        {"header_rejects_incompatible_flags": 1, "bytes_discarded": len(bad)})

    # length: a header announcing n = 1025, with a correct header CRC
    bad = build_header(T_DOSE_PROGRAM, 1025, 30)
    assert MAGIC not in bad[1:]
    neg("length_1025_header_only", "length", bad, 31,
        {"header_rejects_length": 1, "bytes_discarded": 16})

    # header CRC: a whole frame whose header CRC is off by one bit
    good = build_frame(T_PUMP_STATUS, enc_pump_status(PUMP_STATUS), 40)
    bad = bytearray(good)
    bad[12] ^= 0x01
    bad = bytes(bad)
    assert MAGIC not in bad[1:]
    neg("header_crc_bit_flip", "header_crc", bad, 41,
        {"header_rejects_header_crc": 1, "bytes_discarded": len(bad)})

    # payload CRC: one payload bit flipped; the whole frame (16 + 24 + 4) is discarded
    bad = bytearray(build_frame(T_PUMP_STATUS, enc_pump_status(PUMP_STATUS), 50))
    bad[16 + 8] ^= 0x04
    bad = bytes(bad)
    neg("payload_crc_bit_flip", "payload_crc", bad, 51,
        {"payload_crc_errors": 1, "bytes_discarded": 44, "frames_accepted": 1})

    # unknown type 0x0042 with both CRCs valid: accepted, counted, skipped (baseline seq)
    bad = build_frame(0x0042, bytes.fromhex("00112233445566778899aabbccddeeff"), 60)
    neg("unknown_type_0x0042", "unknown_type", bad, 61,
        {"unknown_types": 1, "frames_accepted": 2, "bytes_discarded": 0, "sequence_gaps": 0})

    # short payload: PUMP_STATUS with 20 bytes
    bad = build_frame(T_PUMP_STATUS, enc_pump_status(PUMP_STATUS)[:20], 70)
    neg("short_pump_status_20_bytes", "short_payload", bad, 71,
        {"short_payloads": 1, "frames_accepted": 2, "bytes_discarded": 0, "sequence_gaps": 0})

    # short payload: DOSE_PROGRAM claiming 3 flex steps but carrying 2
    two = dict(DOSE_PROGRAM_FLEX, flex_steps=DOSE_PROGRAM_FLEX["flex_steps"][:2],
               periodic_boluses=[])
    p = enc_dose_program(two, flex_step_count=3)
    assert len(p) == 40
    bad = build_frame(T_DOSE_PROGRAM, p, 80)
    neg("short_dose_program_3_steps_claimed_2_sent", "short_payload", bad, 81,
        {"short_payloads": 1, "frames_accepted": 2})

    # short payload: ALARM with detail_length 20 but only 10 detail bytes
    p = enc_alarm(dict(ALARM_LOW_RES, detail="reservoir "), detail_length=20)
    assert len(p) == 34
    bad = build_frame(T_ALARM, p, 90)
    neg("short_alarm_detail_length_20_sent_10", "short_payload", bad, 91,
        {"short_payloads": 1, "frames_accepted": 2})

    # short payload: DOSE_PROGRAM with flex_step_count 14 (> 13) and all 14 steps present
    fourteen = dict(DOSE_PROGRAM_FLEX, flex_steps=DOSE_PROGRAM_FLEX["flex_steps"]
                    + [{"start_minute": 1430, "rate_ug_per_day_x10": 3500}],
                    periodic_boluses=[])
    p = enc_dose_program(fourteen)
    assert len(p) == 24 + 8 * 14
    bad = build_frame(T_DOSE_PROGRAM, p, 100)
    neg("short_dose_program_14_flex_steps_over_maximum_13", "short_payload", bad, 101,
        {"short_payloads": 1, "frames_accepted": 2})

    reasons = {e["reason"] for e in out}
    assert reasons == {"garbage", "version", "incompatible_flags", "length", "header_crc",
                       "payload_crc", "unknown_type", "short_payload"}
    return out


def stream_vectors():
    out = []

    def add(name, data, expect_delivered, expect, expect_pending):
        entry, delivered, counters, pending = stream_entry(name, data)
        assert summary(delivered) == expect_delivered, (name, summary(delivered))
        for k, v in expect.items():
            assert counters[k] == v, (name, k, counters[k], v)
        assert pending == expect_pending, (name, pending)
        out.append(entry)

    # (a) garbage, 5 frames, garbage between some of them, a trailing partial frame
    g1 = garbage("stream/a/1", 23)
    g2 = garbage("stream/a/2", 5)
    g3 = garbage("stream/a/3", 64)
    f1 = build_frame(T_PROGRAMMER_INFO, enc_programmer_info(PROGRAMMER_INFO), 200)
    f2 = build_frame(T_PUMP_SESSION, enc_pump_session(PUMP_SESSION_BEGIN), 201)
    f3 = build_frame(T_PUMP_STATUS, enc_pump_status(PUMP_STATUS), 202)
    f4 = build_frame(T_RESERVOIR, enc_reservoir(RESERVOIR), 203)
    f5 = hb_frame(204)
    partial = build_frame(T_DOSE_PROGRAM, enc_dose_program(DOSE_PROGRAM_FLEX), 205)[:57]
    data = g1 + f1 + f2 + g2 + f3 + g3 + f4 + f5 + partial
    add("garbage_five_frames_garbage_between_trailing_partial", data,
        [{"type": t, "seq": s} for t, s in [("programmer_info", 200), ("pump_session", 201),
                                             ("pump_status", 202), ("reservoir", 203),
                                             ("heartbeat", 204)]],
        {"bytes_discarded": 23 + 5 + 64, "frames_accepted": 5, "sequence_gaps": 0}, 57)

    # (a') trailing partial header (fewer than 16 bytes) and trailing lone B7
    data = f5 + hb_frame(205)[:9]
    add("trailing_partial_header_9_bytes", data, [{"type": "heartbeat", "seq": 204}],
        {"bytes_discarded": 0}, 9)
    data = garbage("stream/lone_b7", 11) + f5 + b"\x00\x42\xb7"
    add("trailing_lone_b7_is_pending", data, [{"type": "heartbeat", "seq": 204}],
        {"bytes_discarded": 11 + 2}, 1)

    # (b) magic bytes B7 E1 inside payloads (ALARM detail and a char field)
    alarm = build_frame(T_ALARM, enc_alarm(ALARM_MAGIC_IN_DETAIL), 300)
    info = dict(PROGRAMMER_INFO, programmer_serial=b"PGM-\xb7\xe1\x01\x00")
    info_frame = build_frame(T_PROGRAMMER_INFO, enc_programmer_info(info), 301)
    assert alarm.count(MAGIC) == 2 and info_frame.count(MAGIC) == 2
    data = alarm + info_frame + hb_frame(302)
    add("magic_bytes_inside_payloads", data,
        [{"type": "alarm", "seq": 300}, {"type": "programmer_info", "seq": 301},
         {"type": "heartbeat", "seq": 302}],
        {"bytes_discarded": 0, "frames_accepted": 3}, 0)

    # (b') a whole valid HEARTBEAT frame (44 bytes) carried inside an ALARM detail: it is
    #      payload, not a frame, and must not be delivered
    embedded = hb_frame(9999)
    alarm = build_frame(T_ALARM, enc_alarm(dict(ALARM_LOW_RES, detail=embedded)), 310)
    data = alarm + hb_frame(311)
    add("whole_frame_inside_alarm_detail", data,
        [{"type": "alarm", "seq": 310}, {"type": "heartbeat", "seq": 311}],
        {"bytes_discarded": 0, "frames_accepted": 2, "sequence_gaps": 0}, 0)

    # (c) a sequence gap and a duplicate (same frame replayed)
    hb_a = hb_frame(400)
    data = hb_a + hb_frame(401) + hb_frame(405) + hb_frame(405) + hb_frame(406)
    add("sequence_gap_and_duplicate", data,
        [{"type": "heartbeat", "seq": s} for s in (400, 401, 405, 405, 406)],
        {"sequence_gaps": 1, "duplicates": 1, "frames_delivered": 5}, 0)

    # (c') wrap-around 0xFFFFFFFF -> 0 is in order; a step back is a gap
    data = hb_frame(0xFFFFFFFE) + hb_frame(0xFFFFFFFF) + hb_frame(0) + hb_frame(1) + hb_frame(0)
    add("sequence_wraparound_then_step_back", data,
        [{"type": "heartbeat", "seq": s} for s in (0xFFFFFFFE, 0xFFFFFFFF, 0, 1, 0)],
        {"sequence_gaps": 1, "duplicates": 0}, 0)

    # (c'') sequence tracking counts skipped (unknown / short) frames too
    data = (hb_frame(500) + build_frame(0x0042, b"", 501)
            + build_frame(T_PUMP_STATUS, enc_pump_status(PUMP_STATUS)[:23], 502) + hb_frame(503))
    add("sequence_counts_unknown_and_short_frames", data,
        [{"type": "heartbeat", "seq": 500}, {"type": "heartbeat", "seq": 503}],
        {"sequence_gaps": 0, "unknown_types": 1, "short_payloads": 1, "frames_accepted": 4}, 0)

    # (d) a false header whose 16 bytes contain the start of a real frame (real frame at +8):
    #     B7 E1 01 00 | type | length=24 | <real frame from here on...>
    real = build_frame(T_PUMP_STATUS, enc_pump_status(PUMP_STATUS), 600)
    false_prefix = MAGIC + bytes([VERSION, 0x00]) + struct.pack("<HH", T_PUMP_STATUS, 24)
    false_header = false_prefix + real[:8]
    assert struct.unpack_from("<I", false_header, 12)[0] != crc32c(false_header[:12])
    data = false_prefix + real + hb_frame(601)
    add("false_header_with_real_frame_starting_at_offset_8", data,
        [{"type": "pump_status", "seq": 600}, {"type": "heartbeat", "seq": 601}],
        {"header_rejects_header_crc": 1, "bytes_discarded": 8, "frames_accepted": 2}, 0)

    # (d') same, the real frame starting at offset 4 of the false header
    false_prefix = MAGIC + bytes([VERSION, 0x00])
    false_header = false_prefix + real[:12]
    assert false_header[6:8] == b"\x01\x00"  # plausible length 1
    assert struct.unpack_from("<I", false_header, 12)[0] != crc32c(false_header[:12])
    data = false_prefix + real + hb_frame(601)
    add("false_header_with_real_frame_starting_at_offset_4", data,
        [{"type": "pump_status", "seq": 600}, {"type": "heartbeat", "seq": 601}],
        {"header_rejects_header_crc": 1, "bytes_discarded": 4, "frames_accepted": 2}, 0)

    # (e) a payload CRC error discards the whole frame even when it contains a real frame
    inner = hb_frame(700)
    outer = bytearray(build_frame(0x0042, inner, 699))
    outer[-1] ^= 0xFF
    data = bytes(outer) + hb_frame(701)
    add("payload_crc_error_discards_whole_frame_including_embedded_frame", data,
        [{"type": "heartbeat", "seq": 701}],
        {"payload_crc_errors": 1, "bytes_discarded": len(outer), "frames_accepted": 1}, 0)

    # (f) every header reject reason in a row, then frames, including a duplicate of a
    #     retransmitted alarm
    hdr_version = build_header(T_HEARTBEAT, 24, 800, version=0)
    hdr_flags = build_header(T_HEARTBEAT, 24, 800, flags=0x18)  # 0x10 compatible, 0x08 not
    hdr_len = build_header(T_HEARTBEAT, 0xFFFF, 800)
    hdr_crc = build_header(T_HEARTBEAT, 24, 800, header_crc=0)
    for h in (hdr_version, hdr_flags, hdr_len, hdr_crc):
        assert MAGIC not in h[1:]
    a1 = build_frame(T_ALARM, enc_alarm(ALARM_LOW_RES), 800)
    a2 = build_frame(T_ALARM, enc_alarm(ALARM_LOW_RES), 801, flags=FLAG_RETRANSMISSION)
    data = hdr_version + hdr_flags + hdr_len + hdr_crc + a1 + a2 + a2 + hb_frame(802)
    add("all_header_rejects_then_alarm_retransmission_replayed", data,
        [{"type": "alarm", "seq": 800}, {"type": "alarm", "seq": 801},
         {"type": "alarm", "seq": 801}, {"type": "heartbeat", "seq": 802}],
        {"header_rejects_version": 1, "header_rejects_incompatible_flags": 1,
         "header_rejects_length": 1, "header_rejects_header_crc": 1, "bytes_discarded": 64,
         "duplicates": 1, "sequence_gaps": 0}, 0)

    # (h) minor revision 1 (§2.5, §5), as a host that opened the line late sees it: a status of a
    #     session whose begin it missed (it belongs to no pump), then the periodic
    #     PROGRAMMER_INFO immediately followed by the open session's PUMP_SESSION begin, byte for
    #     byte the session's first begin (the same session goes on, not a new one), the session's
    #     messages, and its end.
    begin_payload = enc_pump_session(PUMP_SESSION_BEGIN)
    end_payload = enc_pump_session(dict(PUMP_SESSION_BEGIN, event=2))
    assert begin_payload[22] == 1 and end_payload[22] == 2 and begin_payload[:22] == end_payload[:22]
    data = (build_frame(T_PUMP_STATUS, enc_pump_status(PUMP_STATUS), 1100)
            + build_frame(T_PROGRAMMER_INFO, enc_programmer_info(PROGRAMMER_INFO_MINOR_1), 1101)
            + build_frame(T_PUMP_SESSION, begin_payload, 1102)
            + build_frame(T_RESERVOIR, enc_reservoir(RESERVOIR), 1103)
            + hb_frame(1104)
            + build_frame(T_ALARM, enc_alarm(ALARM_LOW_RES), 1105)
            + build_frame(T_PUMP_SESSION, end_payload, 1106))
    add("minor_1_pump_session_begin_repeated_after_programmer_info", data,
        [{"type": t, "seq": s} for t, s in [("pump_status", 1100), ("programmer_info", 1101),
                                             ("pump_session", 1102), ("reservoir", 1103),
                                             ("heartbeat", 1104), ("alarm", 1105),
                                             ("pump_session", 1106)]],
        {"bytes_discarded": 0, "frames_accepted": 7, "sequence_gaps": 0}, 0)
    delivered, _, _ = decode(data)
    assert delivered[1]["fields"]["protocol_minor"] == 1
    assert delivered[2]["fields"] == render_fields(T_PUMP_SESSION, PUMP_SESSION_BEGIN)

    # (g) zero-length frame of an unknown type (payload CRC of the empty string is 0)
    empty = build_frame(0x7FFF, b"", 900)
    assert empty[16:] == b"\x00\x00\x00\x00"
    add("zero_length_unknown_type", empty + hb_frame(901), [{"type": "heartbeat", "seq": 901}],
        {"unknown_types": 1, "frames_accepted": 2}, 0)

    return out


def main():
    vectors = {
        "comment": "Generated by protocol-spec/tools/make_vectors.py from PROTOCOL.md; "
                   "do not edit by hand.",
        "crc32c": crc_vectors(),
        "frames": frame_vectors(),
        "negative": negative_vectors(),
        "streams": stream_vectors(),
    }
    for section in ("frames", "negative", "streams"):
        names = [v["name"] for v in vectors[section]]
        assert len(names) == len(set(names)), section
    for section in ("negative", "streams"):
        for v in vectors[section]:
            c = v["counters"]
            assert list(c) == COUNTER_KEYS
            assert c["frames_accepted"] == (c["frames_delivered"] + c["unknown_types"]
                                            + c["short_payloads"]), v["name"]
            assert c["frames_delivered"] == len(v["delivered"])
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.path.join(os.path.dirname(here), "vectors.json")
    # --out PATH writes elsewhere (the test script compares a fresh copy with the committed one).
    if len(sys.argv) == 3 and sys.argv[1] == "--out":
        path = sys.argv[2]
    elif len(sys.argv) != 1:
        sys.exit("usage: make_vectors.py [--out PATH]")
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        json.dump(vectors, f, indent=1)
        f.write("\n")
    counts = ", ".join(f"{k}: {len(vectors[k])}" for k in ("crc32c", "frames", "negative",
                                                            "streams"))
    print(f"wrote {os.path.relpath(path)} ({counts})", file=sys.stderr)


if __name__ == "__main__":
    main()
