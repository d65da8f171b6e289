#!/usr/bin/env python3
"""Where the live path's time goes (issue 12): itb-bridged fed PUMP_STATUS frames on a pty at a
fixed rate while one subscriber follows `/v1/events`, sampled by `perf record` (cpu-clock, with
DWARF call graphs) only while the frames flow, not during start-up or shutdown; and the daemon's
own journal-commit histogram (`itb_journal_write_seconds` in /metrics) over the same frames.
(valgrind 3.19, Debian 12's, crashes on the Swift 6.3 binaries, so callgrind is not used.)

    swift build -c release --product itb-bridged
    scripts/profile-live-path.py --daemon .build/release/itb-bridged [--frames 2000] [--rate 100]
    scripts/profile-live-path.py --daemon .build/release/itb-bridged --mallocs   # heap allocations per frame

Prints the share of the daemon's CPU time in each stage of the path (decode, rules, the journal commit
on the link thread, the queued snapshot write off it, SQLite in both, publish, rendering, the event loop's write), CPU time per frame, the journal
commit's mean time per frame, then the top of `perf report --children`. Frames are built with protocol-spec/tools/make_vectors.py.
"""
import argparse
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tty

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "protocol-spec", "tools"))
import make_vectors as mv  # noqa: E402

# Stages of the path, as symbol substrings (Swift mangles module and type names into symbols; the
# demangled names callgrind_annotate prints contain these).
STAGES = [
    ("decode (FrameDecoder.feed)", r"FrameDecoder\.feed"),
    ("rules (BridgeRules.receive)", r"BridgeRules\.receive"),
    ("journal commit (Journal.commitNow)", r"Journal\.commitNow"),
    ("queued snapshot write, off the link thread (Journal.commitQueued)", r"Journal\.commitQueued"),
    ("  of which SQLite (sqlite3_step)", r"(^|[:\s])sqlite3_step\b"),
    ("publish (EventHub.publish)", r"EventHub\.publish"),
    ("JSON rendering (Rendering.*)", r"Rendering\.string"),
    ("subscriber write (SSEChannelSink)", r"SSEChannelSink"),
    ("whole step (BridgeCore.receiveNow)", r"BridgeCore\.receiveNow"),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--daemon", default=".build/release/itb-bridged")
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--out", help="keep perf's data file here")
    parser.add_argument("--mallocs", action="store_true",
                        help="count calls of libc's malloc per thread instead of sampling CPU time (a uprobe): "
                             "over the frames, and over as long a window with no frames (no perf data file: --out is not used)")
    args = parser.parse_args()
    if not shutil.which("perf"):
        sys.exit("profile-live-path: perf is not installed (apt-get install linux-perf)")
    work = tempfile.mkdtemp(prefix="itb-profile-")
    master, slave = os.openpty()
    tty.setraw(slave)
    link = os.path.join(work, "programmer")
    os.symlink(os.ttyname(slave), link)
    out = args.out or os.path.join(work, "perf.data")
    sock = os.path.join(work, "api.sock")
    daemon = subprocess.Popen(
        [args.daemon, "--no-discovery", "--device", link, "--socket", sock, "--state-dir", os.path.join(work, "state"),
         "--log-level", "warning"],
        stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "daemon.log"), "wb"))
    seq = [0]

    def send(msg_type, message):
        os.write(master, mv.build_frame(msg_type, mv.ENCODERS[msg_type](message), seq[0]))
        seq[0] += 1

    def drain(seconds):
        end = time.time() + seconds
        got = b""
        while time.time() < end:
            ready, _, _ = select.select([master], [], [], max(0.0, end - time.time()))
            if ready:
                got += os.read(master, 4096)
        return got

    # The daemon opens the line (a HOST_HEARTBEAT), the programmer identifies itself.
    if not drain(120):
        daemon.kill()
        sys.exit("profile-live-path: the daemon never opened the pty (see " + work + "/daemon.log)")
    send(mv.T_PROGRAMMER_INFO, {"boot_id": 0x5EED_0F11, "firmware_version": mv.fw(2, 6, 0), "protocol_minor": 1,
                                "programmer_serial": "PGM-PROFILE", "hardware_model": "ITB-CP 8840"})
    for _ in range(600):
        if os.path.exists(sock):
            break
        time.sleep(0.1)
    time.sleep(2)
    # One subscriber, as in the latency benchmark.
    received = [0]

    def follow():
        s = socket.socket(socket.AF_UNIX)
        s.connect(sock)
        s.sendall(b"GET /v1/events?types=status HTTP/1.1\r\nHost: localhost\r\n\r\n")
        s.settimeout(1.0)
        while daemon.poll() is None:
            try:
                data = s.recv(65536)
            except socket.timeout:
                continue
            if not data:
                return
            received[0] += data.count(b"event: status")
    threading.Thread(target=follow, daemon=True).start()
    time.sleep(1)
    now = int(time.time() * 1000)
    def metric(name):
        s2 = socket.socket(socket.AF_UNIX)
        s2.connect(sock)
        s2.sendall(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        text = b""
        while True:
            chunk = s2.recv(65536)
            if not chunk:
                break
            text += chunk
        found = re.search(rb"^" + name.encode() + rb"(?:\{[^}]*\})? ([0-9.e+-]+)$", text, re.M)
        return float(found.group(1)) if found else 0.0
    if args.mallocs:
        count_mallocs(args, daemon, send, drain, now, received)
        shutil.rmtree(work, ignore_errors=True)
        return
    commit_sum0, commit_count0 = metric("itb_journal_write_seconds_sum"), metric("itb_journal_write_seconds_count")
    cpu0 = sum(int(x) for x in open(f"/proc/{daemon.pid}/stat").read().rsplit(")", 1)[1].split()[11:13])
    recorder = subprocess.Popen(["perf", "record", "-e", "cpu-clock", "-F", "4999", "--call-graph", "dwarf,16384",
                                 "-p", str(daemon.pid), "-o", out], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1)
    feed(args, send, drain, now)
    recorder.send_signal(signal.SIGINT)
    recorder.wait(120)
    cpu_ticks = sum(int(x) for x in open(f"/proc/{daemon.pid}/stat").read().rsplit(")", 1)[1].split()[11:13]) - cpu0
    commit_sum = metric("itb_journal_write_seconds_sum") - commit_sum0
    commit_count = metric("itb_journal_write_seconds_count") - commit_count0
    daemon.send_signal(signal.SIGTERM)
    daemon.wait(120)
    print(f"frames sent: {args.frames} at {args.rate:g}/s; status events received by the subscriber: {received[0]}")
    report = subprocess.run(["perf", "report", "-i", out, "--stdio", "--children", "--sort", "symbol", "--percent-limit", "0.5",
                             "-g", "none"], capture_output=True, text=True).stdout
    rows = []
    for line in report.splitlines():
        m = re.match(r"^\s*([\d.]+)%\s+([\d.]+)%\s+\[[.k]\]\s+(.*)$", line)
        if m:
            rows.append((float(m.group(1)), float(m.group(2)), m.group(3).strip()))
    if not rows:
        print(report[:4000])
        sys.exit("profile-live-path: perf report printed no rows")
    # Swift symbols, demangled (perf knows C++ mangling only).
    demangled = subprocess.run(["swift", "demangle", "--simplified", "--compact"], input="\n".join(name for _, _, name in rows),
                               capture_output=True, text=True).stdout.splitlines()
    if len(demangled) == len(rows):
        rows = [(children, own, name) for (children, own, _), name in zip(rows, demangled)]
    hz = os.sysconf("SC_CLK_TCK")
    cpu_ms_per_frame = cpu_ticks / hz * 1000 / args.frames
    commit_ms = commit_sum * 1000 / commit_count if commit_count else 0.0
    print(f"daemon CPU time per frame: {cpu_ms_per_frame:.3f} ms; journal commits: {commit_count:.0f}, mean {commit_ms:.3f} ms each")
    print("share of the daemon's CPU time (inclusive, perf --children):")
    shares = {}
    for label, pattern in STAGES:
        share = max([children for children, _, name in rows if re.search(pattern, name)] or [0.0])
        shares[label] = share
        print(f"  {label:66} {share:5.1f} %  ({share / 100 * cpu_ms_per_frame:.3f} ms per frame)")
    print("\ntop of perf report --children (inclusive %, self %, symbol):")
    for children, own, name in rows[:45]:
        print(f"{children:6.1f} {own:6.1f}  {name[:150]}")
    print(f"FIGURE perf.profile_live_path: frames={args.frames} rate={args.rate:g} received={received[0]} "
          f"cpu_ms_per_frame={cpu_ms_per_frame:.3f} commit_mean_ms={commit_ms:.3f} "
          + " ".join(f"{re.sub(r'[^a-z]+', '_', label.split('(')[0].strip().lower()).strip('_')}_pct={share:.1f}"
                     for label, share in shares.items()))
    if not args.out:
        shutil.rmtree(work, ignore_errors=True)


def feed(args, send, drain, now):
    """Sends args.frames distinct PUMP_STATUS frames at args.rate, then drains the line for 2 s."""
    interval = 1.0 / args.rate
    next_at = time.time()
    for i in range(args.frames):
        send(mv.T_PUMP_STATUS, {"device_time_ms": now + i * 10, "daily_dose_ug_x10": 4000, "concentration_ug_per_ml": 2000,
                                "active_alarm_mask": i & 0xFF, "pump_state": 0, "dosing_mode": 0, "link_quality_pct": 90})
        next_at += interval
        drain(max(0.0, next_at - time.time()))
    drain(2)


def count_mallocs(args, daemon, send, drain, now, received):
    """Counts libc malloc calls per thread of the daemon (a perf uprobe) over the frames, and over a
    window as long with no frames, and prints the difference per frame: the live path's heap
    allocations (Swift's allocations go through malloc too)."""
    libc = next((line.split()[-1] for line in open(f"/proc/{daemon.pid}/maps") if re.search(r"/libc\.so\.6$", line.strip())), None)
    if not libc:
        sys.exit("profile-live-path: the daemon maps no libc.so.6")
    listed = subprocess.run(["perf", "probe", "-l"], capture_output=True, text=True).stdout
    if "probe_libc:malloc" not in listed:
        made = subprocess.run(["perf", "probe", "-x", libc, "malloc"], capture_output=True, text=True)
        if made.returncode != 0 and "already exists" not in made.stderr:
            sys.exit("profile-live-path: perf probe on malloc failed: " + made.stderr.strip())
    window = args.frames / args.rate + 2

    def counted(action):
        stat = subprocess.Popen(["perf", "stat", "-e", "probe_libc:malloc", "--per-thread", "-x", ",", "-p", str(daemon.pid)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        time.sleep(1)
        action()
        stat.send_signal(signal.SIGINT)
        _, err = stat.communicate(timeout=60)
        per_thread = {}
        for line in err.splitlines():
            fields = line.split(",")
            if len(fields) > 2 and fields[0].strip() and fields[1].strip().isdigit():
                name = re.sub(r"-\d+$", "", fields[0].strip())
                per_thread[name] = per_thread.get(name, 0) + int(fields[1])
        return per_thread

    idle = counted(lambda: drain(window))
    busy_received = received[0]
    busy = counted(lambda: feed(args, send, drain, now))
    delivered = received[0] - busy_received
    print(f"frames sent: {args.frames} at {args.rate:g}/s; status events received by the subscriber: {delivered}")
    print(f"malloc calls per thread, over the frames and over {window:.0f} s with none (perf uprobe on {libc}):")
    total_busy, total_idle = sum(busy.values()), sum(idle.values())
    for name in sorted(set(busy) | set(idle), key=lambda n: -(busy.get(n, 0) - idle.get(n, 0))):
        b, i = busy.get(name, 0), idle.get(name, 0)
        print(f"  {name:24} {b:9d} with frames  {i:9d} without  {(b - i) / args.frames:8.2f} per frame")
    per_frame = (total_busy - total_idle) / args.frames
    print(f"all threads: {total_busy} with frames, {total_idle} without: {per_frame:.2f} malloc calls per frame")
    print(f"FIGURE perf.live_path_mallocs: frames={args.frames} rate={args.rate:g} received={delivered} "
          f"mallocs_with_frames={total_busy} mallocs_without={total_idle} mallocs_per_frame={per_frame:.2f}")
    daemon.send_signal(signal.SIGTERM)
    daemon.wait(120)


if __name__ == "__main__":
    main()
