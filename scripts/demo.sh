#!/usr/bin/env bash
# The main job: itb-bridged attached to a simulated programmer, with its socket and journal under
# .demo/ in the repository (no root needed). Prints the curl and itbctl commands to try, and runs
# until Ctrl-C (or for DEMO_SECONDS seconds).
#
#   scripts/demo.sh                      # scenario "normal", a day of pump time per 24 s
#   SCENARIO=low-reservoir ACCEL=43200 scripts/demo.sh
#   itbctl simulate --list               # the scenarios
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
. scripts/lib.sh
ensure_packages "${PROJECT_PACKAGES[@]}" curl  # curl: the commands the demo prints

swift build --product itb-bridged
swift build --product itbctl
bin="$(swift build --show-bin-path)"

demo="$root/.demo"
mkdir -p "$demo"
rm -f "$demo/programmer"
scenario="${SCENARIO:-normal}"
accel="${ACCEL:-3600}"

pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

"$bin/itbctl" simulate --scenario "$scenario" --accel "$accel" --link "$demo/programmer" >"$demo/simulator.pty" 2>"$demo/simulator.log" &
pids+=($!)
for _ in $(seq 1 100); do [ -e "$demo/programmer" ] && break; sleep 0.05; done

# The simulated programmer's clock runs $accel times faster than the host's: widen the clock-drift
# bound so the bridge does not flag it (a real programmer's clock does not run fast).
cat >"$demo/itb-bridged.conf" <<CONF
discovery = no
clock_drift_bound_s = 1000000000
CONF
"$bin/itb-bridged" --config "$demo/itb-bridged.conf" --device "$demo/programmer" \
    --socket "$demo/api.sock" --state-dir "$demo/state" --capture-dir "$demo/captures" 2>"$demo/itb-bridged.log" &
pids+=($!)
for _ in $(seq 1 200); do [ -S "$demo/api.sock" ] && break; sleep 0.05; done
if [ ! -S "$demo/api.sock" ]; then
    echo "itb-bridged did not start; its log:" >&2
    cat "$demo/itb-bridged.log" >&2
    exit 1
fi

cat <<TXT

itb-bridged is running with a simulated programmer (scenario "$scenario", ${accel}× pump time).
Logs: $demo/itb-bridged.log, $demo/simulator.log. Captures: $demo/captures/. Try, in another shell:

  curl --unix-socket $demo/api.sock http://localhost/v1/health
  curl --unix-socket $demo/api.sock http://localhost/v1/devices
  curl --unix-socket $demo/api.sock http://localhost/v1/devices/PGM-SIM-0001/reservoir
  curl --unix-socket $demo/api.sock 'http://localhost/v1/alarms?active=true'
  curl -N --unix-socket $demo/api.sock http://localhost/v1/events
  $bin/itbctl --help
  $bin/itbctl status --socket $demo/api.sock
  $bin/itbctl watch --socket $demo/api.sock

Ctrl-C stops both.
TXT

if [ -n "${DEMO_SECONDS:-}" ]; then
    sleep "$DEMO_SECONDS"
    curl -sf --unix-socket "$demo/api.sock" http://localhost/v1/devices/PGM-SIM-0001/reservoir >/dev/null \
        && echo "demo: the bridge serves the simulated programmer's reservoir"
else
    wait "${pids[@]}"
fi
