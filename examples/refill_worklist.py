#!/usr/bin/env python3
"""An example clinic tool for itb-bridge, standard library only: it prints the refill worklist
(GET /v1/pumps) and one pump's refills (GET /v1/pumps/{id}/refills) through the bridge's Unix
socket, as a clinic developer would start.

    examples/refill_worklist.py                         # the worklist, and the refills of the first pump
    examples/refill_worklist.py --pump 1-NGP104857H     # that pump's refills
    examples/refill_worklist.py --due-within 14         # only refills due in the next 14 days
    ITB_SOCKET=.demo/api.sock examples/refill_worklist.py

Exit status: 0 on success; 1 when the bridge answers with an error; 2 when it cannot be reached.
"""
import argparse
import datetime
import http.client
import json
import os
import socket
import sys
import urllib.parse


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP/1.1 over a Unix socket (the bridge never listens on IP)."""

    def __init__(self, path, timeout=10):
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.socket_path)
        self.sock = sock


class BridgeError(Exception):
    pass


def get(socket_path, path):
    connection = UnixHTTPConnection(socket_path)
    try:
        connection.request("GET", path, headers={"Accept": "application/json"})
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    document = json.loads(body) if body else {}
    if response.status != 200:
        raise BridgeError(f"GET {path}: {response.status} {document.get('error', '')}: {document.get('message', body[:200])}")
    return document


def worklist(socket_path, due_within_days=None):
    """Every page of GET /v1/pumps, following the `next` cursor."""
    query = {"limit": "500"}
    if due_within_days is not None:
        due = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=due_within_days)
        query["due_before"] = due.strftime("%Y-%m-%dT%H:%M:%SZ")
    pumps = []
    while True:
        page = get(socket_path, "/v1/pumps?" + urllib.parse.urlencode(query))
        pumps += page["pumps"]
        if not page.get("next"):
            return pumps
        query["after"] = page["next"]


def number(value, digits=0):
    return "-" if value is None else f"{value:,.{digits}f}"


def print_worklist(pumps):
    print(f"{'PUMP':<22} {'MODEL':<16} {'BATTERY':<8} {'VOLUME µL':>10} {'PROJECTED µL':>13} {'REFILL DUE':<11} {'REASON':<20} ALARMS")
    for pump in pumps:
        derived = pump.get("derived") or {}
        reservoir = pump.get("reservoir") or {}
        due = (derived.get("refill_due_date") or "-")[:10]
        print(f"{pump['id']:<22} {pump['pump_model'][:16]:<16} {pump['battery_state']:<8} "
              f"{number(reservoir.get('volume_ul'), 1):>10} {number(pump.get('projected_volume_ul'), 1):>13} "
              f"{due:<11} {derived.get('refill_due_reason') or '-':<20} {pump['active_alarms']}")
    print(f"{len(pumps)} pump(s)")


def print_refills(socket_path, pump_id):
    refills = get(socket_path, "/v1/pumps/" + urllib.parse.quote(pump_id, safe="") + "/refills")["refills"]
    print(f"\nRefills of {pump_id}:")
    print(f"{'REFILL TIME':<25} {'µg/mL':>6} {'FILLED µL':>10} {'EXPECTED µL':>12} {'MEASURED µL':>12} {'Δ µL':>7} FLAGS")
    for refill in refills:
        flags = []
        if refill["flagged"]:
            flags.append("DISCREPANCY")
        if refill["concentration_changed"]:
            flags.append(f"CONCENTRATION CHANGED (was {refill['previous_concentration_ug_per_ml']})")
        print(f"{refill['refill_time'] or '-':<25} {refill['concentration_ug_per_ml']:>6} {refill['volume_filled_ul']:>10} "
              f"{refill['expected_residual_ul']:>12} {refill['measured_residual_ul']:>12} {refill['discrepancy_ul']:>7} {' '.join(flags)}")
    if not refills:
        print("no refills recorded")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--socket", default=os.environ.get("ITB_SOCKET", "/run/itb-bridge/api.sock"))
    parser.add_argument("--pump", help="print this pump's refills (default: the first pump of the worklist)")
    parser.add_argument("--due-within", type=float, metavar="DAYS", help="only pumps whose refill is due within DAYS")
    args = parser.parse_args()
    try:
        pumps = worklist(args.socket, args.due_within)
        print_worklist(pumps)
        pump_id = args.pump or (pumps[0]["id"] if pumps else None)
        if pump_id:
            print_refills(args.socket, pump_id)
    except BridgeError as error:
        print(f"refill_worklist: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"refill_worklist: cannot reach itb-bridged at {args.socket}: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
