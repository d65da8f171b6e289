#!/usr/bin/env python3
"""Checks a clinic's PostgreSQL against its bridges (scripts/check-fleet.sh runs it).

1. Every event of every bridge's journal (GET /v1/events from Last-Event-ID 0 up to the bridge's
   newest id) is in itb_event exactly once, with the same type and the same JSON (compared as
   values: jsonb orders keys its own way), and itb_event holds nothing else.
2. refill_worklist equals, pump by pump, what the bridges' own GET /v1/pumps say: identity as
   the pump's latest interrogation said (wherever), its latest reservoir reading and derived
   values by device time (wherever taken), first seen at the earliest bridge, last seen at the
   latest, the active alarms of every bridge together, and the projected volume (a projection
   made at another instant: equal within the flow over the seconds between the two).

    fleet-verify.py --pg-socket DIR --bridge ws-1=/path/api.sock --bridge ws-2=... [--figures FILE]
Exits 1 with every difference listed.
"""
import argparse
import datetime as dt
import json
import socket
import subprocess
import sys


def http_get(sock_path, path, headers=None, stream=False):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(30)
    s.connect(sock_path)
    head = f"GET {path} HTTP/1.1\r\nHost: localhost\r\n"
    for k, v in (headers or {}).items():
        head += f"{k}: {v}\r\n"
    if not stream:
        head += "Connection: close\r\n"
    s.sendall((head + "\r\n").encode())
    return s


def read_response(s):
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    if b"chunked" in head.lower():
        out, rest = b"", body
        while rest:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                break
            out += rest[:size]
            rest = rest[size + 2:]
        body = out
    status = int(head.split(b" ")[1])
    return status, body


def get_json(sock_path, path):
    status, body = read_response(http_get(sock_path, path))
    if status != 200:
        raise SystemExit(f"GET {path} on {sock_path} answered {status}: {body[:300]!r}")
    return json.loads(body)


def journal(sock_path):
    """Every journal event: [(id, type, data)] from Last-Event-ID 0 to the newest id."""
    end = get_json(sock_path, "/v1/health")["last_event_id"]
    events = []
    if end == 0:
        return events
    s = http_get(sock_path, "/v1/events", {"Last-Event-ID": "0", "Accept": "text/event-stream"}, stream=True)
    buf = b""
    header_done = False
    text = ""
    while True:
        chunk = s.recv(1 << 20)
        if not chunk:
            break
        buf += chunk
        if not header_done:
            if b"\r\n\r\n" not in buf:
                continue
            _, _, buf = buf.partition(b"\r\n\r\n")
            header_done = True
        # de-chunk what is complete
        while True:
            line_end = buf.find(b"\r\n")
            if line_end < 0:
                break
            size = int(buf[:line_end].split(b";")[0], 16)
            if len(buf) < line_end + 2 + size + 2:
                break
            text += buf[line_end + 2:line_end + 2 + size].decode()
            buf = buf[line_end + 2 + size + 2:]
        while "\n\n" in text:
            block, text = text.split("\n\n", 1)
            fields = {"data": []}
            for line in block.split("\n"):
                if not line or line.startswith(":"):
                    continue
                key, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if key == "data":
                    fields["data"].append(value)
                else:
                    fields[key] = value
            if "id" in fields:
                events.append((int(fields["id"]), fields.get("event", "message"), "\n".join(fields["data"])))
                if events[-1][0] >= end:
                    s.close()
                    return events
    s.close()
    return events


def psql(pg_socket, sql):
    out = subprocess.run(["psql", "-h", pg_socket, "-U", "postgres", "-d", "postgres", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql],
                         check=True, capture_output=True, text=True).stdout
    return [line for line in out.split("\n") if line]


def when(text):
    if text is None:
        return None
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--pg-socket", required=True)
    parser.add_argument("--bridge", action="append", required=True, help="ID=SOCKET")
    args = parser.parse_args()
    bridges = dict(b.split("=", 1) for b in args.bridge)
    problems = []

    # 1. Events, exactly once.
    total = 0
    for bridge_id, sock_path in bridges.items():
        events = journal(sock_path)
        total += len(events)
        rows = psql(args.pg_socket, f"SELECT event_id || E'\\t' || type || E'\\t' || data::text FROM itb_event WHERE bridge_id = '{bridge_id}' ORDER BY event_id")
        forwarded = {}
        for row in rows:
            event_id, type_, data = row.split("\t", 2)
            if int(event_id) in forwarded:
                problems.append(f"{bridge_id}: event {event_id} twice in itb_event")
            forwarded[int(event_id)] = (type_, data)
        for event_id, type_, data in events:
            row = forwarded.pop(event_id, None)
            if row is None:
                problems.append(f"{bridge_id}: event {event_id} ({type_}) missing from itb_event")
            elif row[0] != type_ or json.loads(row[1]) != json.loads(data):
                problems.append(f"{bridge_id}: event {event_id} differs: {data} vs {row[1]}")
        for event_id in forwarded:
            problems.append(f"{bridge_id}: itb_event has event {event_id}, which the journal does not")
        print(f"fleet-verify: {bridge_id}: {len(events)} journal events, {len(rows)} rows in itb_event")

    # 2. The worklist, pump by pump.
    entries = {}
    for bridge_id, sock_path in bridges.items():
        page = get_json(sock_path, "/v1/pumps?limit=1000")
        for pump in page["pumps"]:
            entries.setdefault(pump["id"], []).append((bridge_id, pump))
    central = {}
    for row in psql(args.pg_socket, "SELECT row_to_json(w)::text FROM refill_worklist w"):
        r = json.loads(row)
        central[r["id"]] = r
    if set(central) != set(entries):
        problems.append(f"pumps differ: only central {sorted(set(central) - set(entries))}, only at bridges {sorted(set(entries) - set(central))}")
    compared = 0
    shared = 0
    for pump_id, seen in sorted(entries.items()):
        c = central.get(pump_id)
        if c is None:
            continue
        compared += 1
        if len(seen) > 1:
            shared += 1
        latest_visit = max(seen, key=lambda s: when(s[1]["last_interrogation"]["began_at"]) if s[1]["last_interrogation"] else dt.datetime.min.replace(tzinfo=dt.timezone.utc))[1]
        with_reading = [s for s in seen if s[1]["reservoir"]]
        latest_reading = max(with_reading, key=lambda s: when(s[1]["reservoir"]["device_time"]))[1] if with_reading else None

        def differ(field, expected, actual):
            problems.append(f"{pump_id}: {field}: bridges say {expected!r}, refill_worklist {actual!r}")

        for field in ["pump_serial", "manufacturer_code", "pump_model", "reservoir_capacity_ul", "battery_state", "last_programmer"]:
            if latest_visit[field] != c[field]:
                differ(field, latest_visit[field], c[field])
        for field in ["implant_date", "eri_date", "projected_end_of_service"]:
            if when(latest_visit[field]) != when(c[field]):
                differ(field, latest_visit[field], c[field])
        first_seen = min(when(s[1]["first_seen"]) for s in seen)
        last_seen = max(when(s[1]["last_seen"]) for s in seen)
        if first_seen != when(c["first_seen"]):
            differ("first_seen", first_seen.isoformat(), c["first_seen"])
        if last_seen != when(c["last_seen"]):
            differ("last_seen", last_seen.isoformat(), c["last_seen"])
        active = sum(s[1]["active_alarms"] for s in seen)
        if active != c["active_alarms"]:
            differ("active_alarms (all bridges)", active, c["active_alarms"])
        expected_reservoir = latest_reading["reservoir"] if latest_reading else None
        if expected_reservoir != c["reservoir"]:
            differ("reservoir", expected_reservoir, c["reservoir"])
        expected_derived = latest_reading["derived"] if latest_reading else None
        if expected_derived != c["derived"]:
            differ("derived", expected_derived, c["derived"])
        if latest_reading and latest_reading["projected_volume_ul"] is not None:
            flow = (latest_reading["derived"] or {}).get("flow_ul_per_day") or 0
            seconds = abs((when(c["projected_at"]) - when(latest_reading["projected_at"])).total_seconds())
            tolerance = flow * seconds / 86400 + 0.11
            if c["projected_volume_ul"] is None or abs(float(c["projected_volume_ul"]) - latest_reading["projected_volume_ul"]) > tolerance:
                differ("projected_volume_ul", latest_reading["projected_volume_ul"], c["projected_volume_ul"])
        elif (latest_reading and latest_reading["projected_volume_ul"]) != c["projected_volume_ul"]:
            differ("projected_volume_ul", latest_reading and latest_reading["projected_volume_ul"], c["projected_volume_ul"])

    for p in problems[:50]:
        print("fleet-verify: " + p, file=sys.stderr)
    if problems:
        print(f"fleet-verify: {len(problems)} difference(s)", file=sys.stderr)
        sys.exit(1)
    print(f"fleet-verify: {total} events of {len(bridges)} bridges in itb_event exactly once with identical data; "
          f"refill_worklist equals the bridges' /v1/pumps for all {compared} pumps ({shared} seen at several bridges)")


if __name__ == "__main__":
    main()
