#!/usr/bin/env python3
"""A scripted programmer on a pty: it interrogates two pumps in turn (PUMP_SESSION begin … end,
status, reservoir, program, a refill and an alarm each), the way a clinic day does. Used by
scripts/make-v1-journal.sh (so that a journal written by a bridge that predates pump records holds
pump sessions to migrate) and by scripts/check-example.sh (the example clinic tool's data).

Frames are built with protocol-spec/tools/make_vectors.py, the independent implementation of
PROTOCOL.md. Usage: two-pumps-programmer.py --link PATH [--serial PGM-V1]
"""
import argparse, os, select, sys, time, tty

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "protocol-spec", "tools"))
import make_vectors as mv  # noqa: E402

DAY = 86_400_000


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--link", required=True)
    parser.add_argument("--serial", default="PGM-V1")
    args = parser.parse_args()
    master, slave = os.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)
    if os.path.lexists(args.link):
        os.unlink(args.link)
    os.symlink(path, args.link)
    seq = [0]

    def send(msg_type, message):
        payload = mv.ENCODERS[msg_type](message)
        os.write(master, mv.build_frame(msg_type, payload, seq[0]))
        seq[0] += 1

    # Wait for the bridge: it opens the port and sends HOST_HEARTBEAT.
    deadline = time.time() + 30
    while time.time() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready and os.read(master, 4096):
            break
    else:
        sys.exit("v1-programmer: the bridge never opened " + args.link)
    now = int(time.time() * 1000)
    send(mv.T_PROGRAMMER_INFO, {"boot_id": 0x5EED_0001, "firmware_version": mv.fw(2, 4, 1), "protocol_minor": 0,
                                "programmer_serial": args.serial, "hardware_model": "ITB-CP 8840"})
    time.sleep(0.3)
    alarm_id = 0
    for code, serial, model, capacity, volume, dose, concentration in (
            (1, "NGP-V1-A", "SynchroMed II", 40000, 250000, 4000, 2000),
            (2, "PR-V1-B", "Prometra II", 20000, 61000, 2000, 500)):
        session = {"implant_date_ms": now - 700 * DAY, "eri_date_ms": 0, "reservoir_capacity_ul": capacity,
                   "manufacturer_code": code, "event": 1, "battery_state": 0, "pump_model": model, "pump_serial": serial}
        send(mv.T_PUMP_SESSION, session)
        send(mv.T_PUMP_STATUS, {"device_time_ms": now, "daily_dose_ug_x10": dose, "concentration_ug_per_ml": concentration,
                                "active_alarm_mask": 0, "pump_state": 0, "dosing_mode": 0, "link_quality_pct": 90})
        send(mv.T_RESERVOIR, {"device_time_ms": now, "last_refill_time_ms": now - 30 * DAY, "volume_ul_x10": volume,
                              "capacity_ul": capacity, "low_reservoir_threshold_ul": 2000,
                              "delivered_since_refill_ul_x10": 0, "volume_source": 0})
        send(mv.T_DOSE_PROGRAM, dict(mv.DOSE_PROGRAM_SIMPLE, device_time_ms=now, daily_dose_ug_x10=dose))
        send(mv.T_REFILL, {"refill_time_ms": now - (30 + code) * DAY, "concentration_ug_per_ml": concentration,
                           "volume_filled_ul": capacity, "expected_residual_ul": 3000, "measured_residual_ul": 3400,
                           "drug_lot": "LOT-" + serial})
        alarm_id += 1
        send(mv.T_ALARM, {"onset_time_ms": now, "alarm_id": alarm_id, "code": 1, "priority": 2, "transition": 1,
                          "detail": "low reservoir " + serial})
        time.sleep(1.0)
        send(mv.T_PUMP_SESSION, dict(session, event=2))
        time.sleep(0.5)
    time.sleep(1.0)
    os.unlink(args.link)


if __name__ == "__main__":
    main()
