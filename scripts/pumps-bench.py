#!/usr/bin/env python3
"""The pump-records benchmark (issue 13): a journal of N pumps (default 5,000) with a year of
monthly visits each, built by the real daemon from a capture it replays through its own pipeline
(`itb-bridged --replay`), then served by a freshly started daemon on that journal; it times the
refill worklist (`GET /v1/pumps`, its first page) and a year of one pump's reservoir history
(`GET /v1/pumps/{id}/reservoir?since=…`) over the Unix socket, beside `GET /v1/health` (the HTTP
floor, in the same run).

    swift build -c release --product itb-bridged
    scripts/pumps-bench.py --daemon .build/release/itb-bridged            # 5,000 pumps × 12 visits
    scripts/pumps-bench.py --daemon … --pumps 500 --requests 300          # a quick look

Frames are built with protocol-spec/tools/make_vectors.py (the independent implementation of
PROTOCOL.md); the capture follows protocol-spec/CAPTURE.md. Each visit (session begin, status,
reservoir, dose program, a refill every third month, session end) is one capture record, as one
read() of the line. Prints readable lines and `FIGURE perf.pumps…` lines for BENCHMARKS.md; exits 1
when a request fails or a pump is missing.
"""
import argparse
import http.client
import json
import os
import random
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "protocol-spec", "tools"))
import make_vectors as mv  # noqa: E402

DAY_MS = 86_400_000
MONTH_MS = 30 * DAY_MS

# A table-driven CRC-32C (the same polynomial as make_vectors.crc32c, which it is checked
# against): the capture holds tens of megabytes.
_TABLE = []
for _n in range(256):
    _c = _n
    for _ in range(8):
        _c = (_c >> 1) ^ mv.CRC32C_POLY_REFLECTED if _c & 1 else _c >> 1
    _TABLE.append(_c)


def crc32c(data):
    crc = 0xFFFFFFFF
    table = _TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


assert crc32c(b"123456789") == mv.crc32c(b"123456789") == 0xE3069283


class Capture:
    """A capture file (CAPTURE.md, version 1) being written."""

    def __init__(self, path, start_ns):
        self.file = open(path, "wb")
        head = b"ITBCAP\r\n" + struct.pack("<HHIq", 1, 32, 0, start_ns)
        self.file.write(head + struct.pack("<II", crc32c(head), 0))
        self.seq = 0

    def frame(self, msg_type, message):
        payload = mv.ENCODERS[msg_type](message)
        header = struct.pack("<2sBBHHI", mv.MAGIC, mv.VERSION, 0, msg_type, len(payload), self.seq)
        self.seq = (self.seq + 1) & 0xFFFFFFFF
        header += struct.pack("<I", crc32c(header))
        return header + payload + struct.pack("<I", crc32c(payload))

    def record(self, timestamp_ns, data):
        body = struct.pack("<qB3xI", timestamp_ns, 0, len(data)) + data
        self.file.write(b"\xc0\xa7\x1e\x5b" + body + struct.pack("<I", crc32c(body)))

    def close(self):
        self.file.close()


def make_capture(path, pumps, months, now_ms, serial):
    """Writes the year: every month, each pump visited once, in time order. Returns the pump ids,
    the frame count and the first visit's time (ms)."""
    start_ms = now_ms - months * MONTH_MS - DAY_MS
    capture = Capture(path, start_ms * 1_000_000)
    capture.record(start_ms * 1_000_000, capture.frame(mv.T_PROGRAMMER_INFO, {
        "boot_id": 0x5EED_B0B0, "firmware_version": mv.fw(2, 6, 0), "protocol_minor": 1,
        "programmer_serial": serial, "hardware_model": "ITB-CP 8840"}))
    frames = 1
    rng = random.Random(13)
    state = []
    ids = []
    for p in range(pumps):
        manufacturer = 1 if p % 3 else 2
        capacity = 40_000 if manufacturer == 1 else 20_000
        pump_serial = f"BENCH{p:06d}"
        ids.append(f"{manufacturer}-{pump_serial}")
        state.append({
            "manufacturer": manufacturer, "capacity": capacity, "serial": pump_serial,
            "model": "SynchroMed II" if manufacturer == 1 else "Prometra II",
            "dose_x10": rng.choice([1000, 2000, 3000, 4000]), "concentration": rng.choice([1000, 2000]),
            "volume": capacity - 1000, "last_fill": start_ms - 10 * DAY_MS,
            "implant": start_ms - rng.randint(100, 2000) * DAY_MS,
        })
    spacing = MONTH_MS // max(pumps, 1)
    for month in range(months):
        for p, pump in enumerate(state):
            t = start_ms + month * MONTH_MS + p * spacing
            flow_ul_per_day = pump["dose_x10"] / 10 * 1000 / pump["concentration"]
            if month > 0:
                pump["volume"] = max(0.0, pump["volume"] - flow_ul_per_day * 30)
            session = {"implant_date_ms": pump["implant"], "eri_date_ms": 0, "reservoir_capacity_ul": pump["capacity"],
                       "manufacturer_code": pump["manufacturer"], "event": 1, "battery_state": 0,
                       "pump_model": pump["model"], "pump_serial": pump["serial"]}
            visit = [capture.frame(mv.T_PUMP_SESSION, session)]
            if month > 0 and (month % 3 == 0 or pump["volume"] < 0.2 * pump["capacity"]):
                expected = int(pump["volume"])
                filled = pump["capacity"] - expected
                visit.append(capture.frame(mv.T_REFILL, {
                    "refill_time_ms": t, "concentration_ug_per_ml": pump["concentration"], "volume_filled_ul": filled,
                    "expected_residual_ul": expected, "measured_residual_ul": max(0, expected + rng.randint(-300, 300)),
                    "drug_lot": f"LOT-{month:02d}-{p % 97:02d}"}))
                pump["volume"] = float(pump["capacity"])
                pump["last_fill"] = t
            if month % 4 == 2:
                pump["dose_x10"] = int(pump["dose_x10"] * 1.05)  # a titration
            visit.append(capture.frame(mv.T_PUMP_STATUS, {
                "device_time_ms": t, "daily_dose_ug_x10": pump["dose_x10"], "concentration_ug_per_ml": pump["concentration"],
                "active_alarm_mask": 0, "pump_state": 0, "dosing_mode": 0, "link_quality_pct": 90}))
            visit.append(capture.frame(mv.T_RESERVOIR, {
                "device_time_ms": t, "last_refill_time_ms": pump["last_fill"], "volume_ul_x10": int(pump["volume"] * 10),
                "capacity_ul": pump["capacity"], "low_reservoir_threshold_ul": 2000,
                "delivered_since_refill_ul_x10": 0, "volume_source": 0}))
            visit.append(capture.frame(mv.T_DOSE_PROGRAM, dict(mv.DOSE_PROGRAM_SIMPLE, device_time_ms=t,
                                                               daily_dose_ug_x10=pump["dose_x10"])))
            visit.append(capture.frame(mv.T_PUMP_SESSION, dict(session, event=2)))
            frames += len(visit)
            capture.record(t * 1_000_000, b"".join(visit))
    capture.close()
    return ids, frames, start_ms


class UnixConnection(http.client.HTTPConnection):
    """An HTTP/1.1 keep-alive connection over the daemon's Unix socket."""

    def __init__(self, path):
        super().__init__("localhost", timeout=30)
        self.unix_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(30)
        self.sock.connect(self.unix_path)


def get(conn, path):
    conn.request("GET", path)
    response = conn.getresponse()
    return response.status, response.read()


def start_daemon(args, work, extra, log_name):
    log = open(os.path.join(work, log_name), "wb")
    process = subprocess.Popen([args.daemon, "--no-discovery", "--socket", os.path.join(work, "api.sock"),
                                "--state-dir", os.path.join(work, "state"), "--log-level", "warning"] + extra,
                               stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 120
    while time.time() < deadline:
        if process.poll() is not None:
            sys.exit(f"pumps-bench: itb-bridged exited with {process.returncode}; see {log.name}")
        try:
            conn = UnixConnection(os.path.join(work, "api.sock"))
            status, _ = get(conn, "/v1/health")
            if status == 200:
                return process, conn
        except OSError:
            pass
        time.sleep(0.05)
    process.kill()
    sys.exit("pumps-bench: itb-bridged did not answer within 120 s")


def stop(process):
    process.terminate()
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def percentile(sorted_values, q):
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def timed(conn, paths, problems):
    """Times each GET (ms), in order; a non-200 answer is a problem."""
    times = []
    for path in paths:
        t0 = time.perf_counter_ns()
        status, body = get(conn, path)
        times.append((time.perf_counter_ns() - t0) / 1e6)
        if status != 200:
            problems.append(f"GET {path}: {status} {body[:200]!r}")
    return sorted(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--daemon", default=".build/release/itb-bridged")
    parser.add_argument("--pumps", type=int, default=5000)
    parser.add_argument("--months", type=int, default=12)
    parser.add_argument("--requests", type=int, default=2000, help="timed requests of each kind")
    parser.add_argument("--work", help="keep the capture and journal here (default: a temporary directory, removed)")
    args = parser.parse_args()
    work = args.work or tempfile.mkdtemp(prefix="itb-pumps-bench-")
    os.makedirs(work, exist_ok=True)
    problems = []
    try:
        now_ms = int(time.time() * 1000)
        capture = os.path.join(work, "year.itbcap")
        t0 = time.time()
        ids, frames, start_ms = make_capture(capture, args.pumps, args.months, now_ms, "PGM-BENCH")
        print(f"capture: {args.pumps} pumps × {args.months} visits, {frames} frames, "
              f"{os.path.getsize(capture) / 1e6:.1f} MB, written in {time.time() - t0:.1f} s")

        # The journal, built by the daemon's own pipeline.
        shutil.rmtree(os.path.join(work, "state"), ignore_errors=True)
        t0 = time.time()
        process, conn = start_daemon(args, work, ["--replay", capture], "build.log")
        last_id, still = -1, 0
        while still < 3:
            time.sleep(1)
            status, body = get(conn, "/v1/health")
            current = json.loads(body).get("last_event_id", 0)
            still = still + 1 if current == last_id else 0
            last_id = current
            if process.poll() is not None:
                sys.exit("pumps-bench: itb-bridged died while replaying; see build.log")
        built_s = time.time() - t0 - 3
        conn.close()
        stop(process)
        state = os.path.join(work, "state")
        journal_bytes = sum(os.path.getsize(os.path.join(state, f)) for f in os.listdir(state) if f.startswith("journal.sqlite"))
        print(f"journal: {last_id} events, {journal_bytes / 1e6:.1f} MB, built by --replay in {built_s:.1f} s")

        # Served from the journal by a fresh daemon, as after a restart.
        process, conn = start_daemon(args, work, [], "serve.log")
        listed = 0
        cursor = None
        while True:
            status, body = get(conn, "/v1/pumps?limit=1000" + (f"&after={cursor}" if cursor else ""))
            page = json.loads(body)
            listed += len(page["pumps"])
            cursor = page.get("next_cursor") or page.get("next")
            if not cursor or not page["pumps"]:
                break
        if listed != args.pumps:
            problems.append(f"GET /v1/pumps lists {listed} pumps, {args.pumps} were interrogated")
        rng = random.Random(7)
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime((start_ms - DAY_MS) / 1000))
        sample = ids[len(ids) // 2]
        status, body = get(conn, f"/v1/pumps/{sample}/reservoir?since={since}")
        readings = len(json.loads(body).get("readings", [])) if status == 200 else 0
        if readings < args.months:
            problems.append(f"pump {sample}: {readings} readings for a year, expected {args.months}")
        n = args.requests
        health = timed(conn, ["/v1/health"] * n, problems)
        worklist = timed(conn, ["/v1/pumps"] * n, problems)
        reservoir = timed(conn, [f"/v1/pumps/{rng.choice(ids)}/reservoir?since={since}" for _ in range(n)], problems)
        conn.close()
        stop(process)
        for name, times in (("health", health), ("worklist", worklist), ("reservoir_year", reservoir)):
            print(f"{name:15} n={len(times)} p50={percentile(times, 0.5):.2f} ms p99={percentile(times, 0.99):.2f} ms "
                  f"max={times[-1]:.2f} ms")
        print(f"FIGURE perf.pumps: pumps={args.pumps} visits_per_pump={args.months} frames={frames} events={last_id} "
              f"journal_mb={journal_bytes / 1e6:.1f} build_s={built_s:.1f} readings_per_year={readings} requests={n} "
              f"health_p50_ms={percentile(health, 0.5):.2f} health_p99_ms={percentile(health, 0.99):.2f} "
              f"worklist_p50_ms={percentile(worklist, 0.5):.2f} worklist_p99_ms={percentile(worklist, 0.99):.2f} "
              f"reservoir_year_p50_ms={percentile(reservoir, 0.5):.2f} reservoir_year_p99_ms={percentile(reservoir, 0.99):.2f}")
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    for problem in problems[:20]:
        print("PROBLEM: " + problem)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
