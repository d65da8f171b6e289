#!/usr/bin/env bash
# Regenerates protocol-spec/samples/: for every built-in scenario, records the simulator through
# the real daemon (itb-bridged --capture-dir, both directions) and writes the capture and its
# golden decode (`itbctl decode`, device → host frames) beside it. The tests compare them.
#
#   scripts/make-sample-captures.sh            # all scenarios
#   scripts/make-sample-captures.sh refill     # one
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
swift build --product itb-bridged >/dev/null
swift build --product itbctl >/dev/null
bin="$(swift build --show-bin-path)"
out="$root/protocol-spec/samples"
mkdir -p "$out"
scenarios=("$@")
# The clinic scenarios (clinic-day, clinic-week) have no sample: their ground truth is checked instead.
[ ${#scenarios[@]} -gt 0 ] || mapfile -t scenarios < <("$bin/itbctl" simulate --list | awk '$1 !~ /^clinic-/ {print $1}')
for scenario in "${scenarios[@]}"; do
    work="$(mktemp -d)"
    "$bin/itbctl" simulate --scenario "$scenario" --play-in 3 --interval-ms 100 --exit-at-end \
        --link "$work/programmer" >/dev/null 2>"$work/sim.log" &
    sim=$!
    for _ in $(seq 1 100); do [ -e "$work/programmer" ] && break; sleep 0.05; done
    printf 'discovery = no\n' >"$work/conf"
    "$bin/itb-bridged" --config "$work/conf" --device "$work/programmer" --socket "$work/api.sock" \
        --state-dir "$work/state" --capture-dir "$work/cap" --log-level error 2>"$work/daemon.log" &
    daemon=$!
    wait "$sim"
    sleep 0.5
    kill -TERM "$daemon"; wait "$daemon" || true
    capture="$(ls "$work"/cap/*.itbcap | head -1)"
    cp "$capture" "$out/$scenario.itbcap"
    "$bin/itbctl" decode "$out/$scenario.itbcap" >"$out/$scenario.jsonl" 2>/dev/null
    echo "$scenario: $(wc -c <"$out/$scenario.itbcap") bytes, $(wc -l <"$out/$scenario.jsonl") frames"
    rm -rf "$work"
done
