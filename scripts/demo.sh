#!/usr/bin/env bash
# The main job: itb-bridged attached to a simulated programmer, with its socket and journal under
# .demo/ in the repository (no root needed). Prints the curl and itbctl commands to try, and runs
# until Ctrl-C (or for DEMO_SECONDS seconds).
#
#   scripts/demo.sh                      # scenario "clinic-day": pump after pump, then the refill worklist
#   SCENARIO=normal scripts/demo.sh      # one pump, a day of pump time per 24 s
#   SCENARIO=low-reservoir ACCEL=43200 scripts/demo.sh
#   DEMO_KEEP_STATE=1 scripts/demo.sh    # keep the previous run's journal (default: a fresh one)
#   itbctl simulate --list               # the scenarios
#
# Each run starts with an empty journal (.demo/state), so one scenario's alarms never carry over
# into the next. If the simulator or the daemon fails, the demo says which, shows its log and exits 1.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
. scripts/lib.sh
ensure_packages "${PROJECT_PACKAGES[@]}" curl  # curl: the commands the demo prints

demo="${DEMO_DIR:-$root/.demo}"   # DEMO_DIR: another place for the demo's files (the tests use one)
mkdir -p "$demo"

# Build with one readable line of progress; the compiler's output goes to a log, shown (its
# errors) only when the build fails.
build_log="$demo/build.log"
: >"$build_log"
if [ -x "$(swift build --show-bin-path 2>/dev/null)/itbctl" ]; then
    echo "demo: building itb-bridged and itbctl (compiler output in $build_log)"
else
    echo "demo: building itb-bridged and itbctl; the first build takes a few minutes (compiler output in $build_log)"
fi
for product in itb-bridged itbctl; do
    swift build --product "$product" >>"$build_log" 2>&1 &
    build_pid=$!
    while kill -0 "$build_pid" 2>/dev/null; do
        # The build's own counter, e.g. "[412/1180] Compiling NIOCore …", on one line.
        step="$(grep -o '^\[[0-9]*/[0-9]*\]' "$build_log" | tail -1 || true)"
        printf '\r  %-12s %-16s' "$product" "${step:-starting}"
        sleep 1
    done
    if ! wait "$build_pid"; then
        printf '\n'
        echo "demo: building $product failed; its errors:" >&2
        grep -E 'error:' "$build_log" | head -20 >&2 || tail -20 "$build_log" >&2
        echo "demo: the whole compiler output is in $build_log" >&2
        exit 1
    fi
    printf '\r  %-12s %-16s\n' "$product" "built"
done
bin="$(swift build --show-bin-path)"

rm -f "$demo/programmer"
scenario="${SCENARIO:-clinic-day}"
accel="${ACCEL:-3600}"

if [ -n "${DEMO_KEEP_STATE:-}" ]; then
    echo "demo: keeping the previous run's journal in $demo/state (DEMO_KEEP_STATE is set)"
else
    rm -rf "$demo/state" "$demo/captures"
    echo "demo: starting with a fresh journal in $demo/state (the previous run's journal and captures were removed; DEMO_KEEP_STATE=1 keeps them)"
fi

pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

# fail_with LOG MESSAGE: says what failed, shows the log's last lines, exits 1.
fail_with() {
    echo "demo: $2; the end of its log ($1):" >&2
    tail -20 "$1" >&2
    exit 1
}

# A clinic scenario (one programmer, pump after pump) writes what each pump did as it goes; the
# demo reads its `complete` to know when the day is over.
truth_args=()
rm -f "$demo/truth.json"
case "$scenario" in clinic-*) truth_args=(--truth "$demo/truth.json") ;; esac
"$bin/itbctl" simulate --scenario "$scenario" --accel "$accel" --link "$demo/programmer" "${truth_args[@]}" >"$demo/simulator.pty" 2>"$demo/simulator.log" &
sim_pid=$!
pids+=("$sim_pid")
for _ in $(seq 1 100); do
    [ -e "$demo/programmer" ] && break
    kill -0 "$sim_pid" 2>/dev/null || break
    sleep 0.05
done
if [ ! -e "$demo/programmer" ] || ! kill -0 "$sim_pid" 2>/dev/null; then
    status=0
    wait "$sim_pid" || status=$?
    fail_with "$demo/simulator.log" "the simulated programmer did not start (itbctl simulate exited with status $status)"
fi

# The simulated programmer's clock runs $accel times faster than the host's: widen the clock-drift
# bound so the bridge does not flag it (a real programmer's clock does not run fast).
cat >"$demo/itb-bridged.conf" <<CONF
discovery = no
clock_drift_bound_s = 1000000000
CONF
"$bin/itb-bridged" --config "$demo/itb-bridged.conf" --device "$demo/programmer" \
    --socket "$demo/api.sock" --state-dir "$demo/state" --capture-dir "$demo/captures" 2>"$demo/itb-bridged.log" &
daemon_pid=$!
pids+=("$daemon_pid")
for _ in $(seq 1 200); do
    [ -S "$demo/api.sock" ] && break
    kill -0 "$daemon_pid" 2>/dev/null || break
    sleep 0.05
done
[ -S "$demo/api.sock" ] || fail_with "$demo/itb-bridged.log" "itb-bridged did not start"
# The simulator can also fail after making its link (a scenario file it cannot play, say).
kill -0 "$sim_pid" 2>/dev/null || fail_with "$demo/simulator.log" "the simulated programmer stopped"

cat <<TXT

itb-bridged is running with a simulated programmer (scenario "$scenario", ${accel}× pump time).
Logs: $demo/itb-bridged.log, $demo/simulator.log. Captures: $demo/captures/. Journal: $demo/state/ (fresh each run).
Try, in another shell:

  curl --unix-socket $demo/api.sock http://localhost/v1/health
  curl --unix-socket $demo/api.sock http://localhost/v1/devices
  curl --unix-socket $demo/api.sock http://localhost/v1/devices/PGM-SIM-0001/reservoir
  curl --unix-socket $demo/api.sock http://localhost/v1/pumps
  curl --unix-socket $demo/api.sock 'http://localhost/v1/alarms?active=true'
  curl -N --unix-socket $demo/api.sock http://localhost/v1/events
  $bin/itbctl --help
  $bin/itbctl --socket $demo/api.sock status
  $bin/itbctl --socket $demo/api.sock pumps
  $bin/itbctl --socket $demo/api.sock pump ID          (an id from the pumps list)
  $bin/itbctl --socket $demo/api.sock alarms
  $bin/itbctl --socket $demo/api.sock watch

Ctrl-C stops both.
TXT

# report_exit PID: says which of the two stopped, with its status and log, and exits 1.
report_exit() {
    local status=0
    wait "$1" || status=$?
    if [ "$1" = "$sim_pid" ]; then
        fail_with "$demo/simulator.log" "the simulated programmer stopped (status $status)"
    else
        fail_with "$demo/itb-bridged.log" "itb-bridged stopped (status $status)"
    fi
}

# A clinic day: once the simulator has played every visit, the refill worklist the bridge built.
if [ "${#truth_args[@]}" -gt 0 ]; then
    echo "demo: the programmer is interrogating the clinic day's pumps, one after another..."
    for _ in $(seq 1 1200); do
        grep -q '"complete":true' "$demo/truth.json" 2>/dev/null && break
        for pid in "$sim_pid" "$daemon_pid"; do kill -0 "$pid" 2>/dev/null || report_exit "$pid"; done
        sleep 0.1
    done
    if grep -q '"complete":true' "$demo/truth.json" 2>/dev/null; then
        echo "demo: the clinic day is over; the refill worklist (itbctl pumps), soonest refill first:"
        "$bin/itbctl" --socket "$demo/api.sock" pumps || echo "demo: itbctl pumps failed (exit $?)" >&2
    else
        echo "demo: the clinic day did not end within 120 s; see $demo/simulator.log" >&2
    fi
fi
if [ -n "${DEMO_SECONDS:-}" ]; then
    end=$((SECONDS + DEMO_SECONDS))
    while [ "$SECONDS" -lt "$end" ]; do
        for pid in "$sim_pid" "$daemon_pid"; do kill -0 "$pid" 2>/dev/null || report_exit "$pid"; done
        sleep 1
    done
    if [ "${#truth_args[@]}" -gt 0 ]; then
        pumps="$(curl -sf --unix-socket "$demo/api.sock" 'http://localhost/v1/pumps?limit=1000' | grep -o '"pump_serial"' | wc -l || true)"
        echo "demo: the bridge serves the clinic day's refill worklist ($pumps pumps)"
    else
        curl -sf --unix-socket "$demo/api.sock" http://localhost/v1/devices/PGM-SIM-0001/reservoir >/dev/null \
            && echo "demo: the bridge serves the simulated programmer's reservoir"
    fi
else
    # Until Ctrl-C (the trap stops both), or until one of them stops by itself: then say which.
    while kill -0 "$sim_pid" 2>/dev/null && kill -0 "$daemon_pid" 2>/dev/null; do sleep 1; done
    for pid in "$sim_pid" "$daemon_pid"; do kill -0 "$pid" 2>/dev/null || report_exit "$pid"; done
fi
