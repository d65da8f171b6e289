#!/usr/bin/env bash
# The fleet test: a clinic of bridges forwarding into one PostgreSQL through faults, then checked
# event by event and pump by pump (scripts/fleet-verify.py). scripts/test.sh runs the short form;
# scripts/proof.sh the long one.
#
#   scripts/check-fleet.sh [BIN_DIR]          # BIN_DIR: where itb-bridged, itbctl, itb-forward are
#   FLEET_BRIDGES=5 FLEET_PLAY_SECONDS=40 scripts/check-fleet.sh     # the defaults (about 1.5 min)
#   FLEET_PLAY_SECONDS=600 scripts/check-fleet.sh                    # the long form (proof.sh)
#
# Its own PostgreSQL cluster (scripts/pg-scratch.sh, Unix socket only). FLEET_BRIDGES bridges,
# each with a simulated programmer playing the clinic-week scenario (21 pumps, 30 visits over 5
# days) in FLEET_PLAY_SECONDS, started a second apart with their own noise seeds: every pump is
# interrogated at every bridge, so pumps move between bridges and the latest reading of a pump
# is at one bridge, its older ones at others. One itb-forward per bridge. Faults, at fractions of
# the play time:
#   0.10  forwarder 3 stopped (SIGTERM); it stays stopped until 0.70, then catches up
#   0.25  forwarder 1 killed with SIGKILL, restarted 2 s later
#   0.40  PostgreSQL crashed (immediate shutdown) and restarted 3 s later, mid-stream
#   0.55  bridge 2 killed with SIGKILL and restarted (its programmer re-announces itself)
#   0.60  forwarder 4 killed with SIGKILL, restarted at once
# Then, once every forwarder has reached its bridge's newest event: every journal event is in
# itb_event exactly once with identical data, and refill_worklist equals the bridges' /v1/pumps.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
bin="${1:-$(swift build --show-bin-path)}"
bridges="${FLEET_BRIDGES:-5}"
play="${FLEET_PLAY_SECONDS:-40}"
for exe in itb-bridged itbctl itb-forward; do
    [ -x "$bin/$exe" ] || { echo "check-fleet: $bin/$exe is missing: swift build first" >&2; exit 1; }
done
command -v psql >/dev/null || { echo "check-fleet: psql is missing: apt-get install postgresql" >&2; exit 1; }

tmp="$(mktemp -d)"
declare -A pids=()
cleanup() {
    local status=$?
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    bash scripts/pg-scratch.sh stop "$tmp/pg" >/dev/null 2>&1 || true
    if [ "$status" -ne 0 ] && [ -z "${FLEET_KEEP:-}" ]; then
        for f in "$tmp"/*/*.log "$tmp/pg/postgres.log"; do
            [ -f "$f" ] && { echo "--- $f (last 20 lines)" >&2; tail -20 "$f" >&2; }
        done
    fi
    [ -n "${FLEET_KEEP:-}" ] && echo "check-fleet: kept $tmp" >&2 || rm -rf "$tmp"
}
trap cleanup EXIT
chmod 755 "$tmp"

pg_socket="$(bash scripts/pg-scratch.sh start "$tmp/pg")"
url="postgresql://postgres@/postgres?host=$pg_socket"
psql() { command psql -h "$pg_socket" -U postgres -d postgres -At -v ON_ERROR_STOP=1 "$@"; }

start_simulator() {
    local i=$1
    "$bin/itbctl" simulate --scenario clinic-week --play-in "$play" --seed "$i" --exit-at-end \
        --link "$tmp/b$i/programmer" >"$tmp/b$i/simulator.out" 2>"$tmp/b$i/simulator.log" &
    pids[sim$i]=$!
}
start_bridge() {
    local i=$1
    "$bin/itb-bridged" --config "$tmp/bridge.conf" --device "$tmp/b$i/programmer" --socket "$tmp/b$i/api.sock" \
        --state-dir "$tmp/b$i/state" --log-level warning >>"$tmp/b$i/bridge.log" 2>&1 &
    pids[bridge$i]=$!
    for _ in $(seq 1 200); do
        curl -sf --unix-socket "$tmp/b$i/api.sock" http://localhost/v1/health >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    echo "check-fleet: bridge $i did not start" >&2
    exit 1
}
start_forwarder() {
    local i=$1
    "$bin/itb-forward" --socket "$tmp/b$i/api.sock" --postgres "$url" --bridge-id "ws-$i" --log-level notice \
        >>"$tmp/b$i/forward.log" 2>&1 &
    pids[forward$i]=$!
}
stop() { local name=$1 signal=$2; kill "-$signal" "${pids[$name]}" 2>/dev/null || true; wait "${pids[$name]}" 2>/dev/null || true; unset "pids[$name]"; }
at() { # at FRACTION: sleeps until that fraction of the play time since the start
    local until_s
    until_s=$(echo "$start_s + $1 * $play" | bc)
    local now_s
    now_s=$(date +%s.%N)
    local wait_s
    wait_s=$(echo "$until_s - $now_s" | bc)
    if [ "$(echo "$wait_s > 0" | bc)" = 1 ]; then sleep "$wait_s"; fi
}

# The simulated programmers' clocks run fast: widen the clock-drift bound (as scripts/demo.sh).
printf 'discovery = no\nclock_drift_bound_s = 1000000000\n' >"$tmp/bridge.conf"

start_s=$(date +%s.%N)
for i in $(seq 1 "$bridges"); do
    mkdir -p "$tmp/b$i"
    start_simulator "$i"
    for _ in $(seq 1 100); do [ -e "$tmp/b$i/programmer" ] && break; sleep 0.05; done
    start_bridge "$i"
    start_forwarder "$i"
    sleep 1
done
echo "check-fleet: $bridges bridges playing clinic-week in ${play} s, each forwarded into PostgreSQL"

if [ "$bridges" -ge 3 ]; then at 0.10; stop forward3 TERM; echo "check-fleet: forwarder 3 stopped"; fi
at 0.25; stop forward1 KILL; echo "check-fleet: forwarder 1 killed (SIGKILL)"; sleep 2; start_forwarder 1
at 0.40; bash scripts/pg-scratch.sh crash "$tmp/pg"; echo "check-fleet: PostgreSQL crashed"; sleep 3
bash scripts/pg-scratch.sh start "$tmp/pg" >/dev/null; echo "check-fleet: PostgreSQL restarted"
if [ "$bridges" -ge 2 ]; then
    at 0.55; stop bridge2 KILL; echo "check-fleet: bridge 2 killed (SIGKILL)"; start_bridge 2; echo "check-fleet: bridge 2 restarted"
fi
if [ "$bridges" -ge 4 ]; then at 0.60; stop forward4 KILL; start_forwarder 4; echo "check-fleet: forwarder 4 killed and restarted"; fi
if [ "$bridges" -ge 3 ]; then at 0.70; start_forwarder 3; echo "check-fleet: forwarder 3 started again, catching up"; fi

for i in $(seq 1 "$bridges"); do wait "${pids[sim$i]}" 2>/dev/null || true; unset "pids[sim$i]"; done
echo "check-fleet: the simulators played the week"

# Every forwarder reaches its bridge's newest event (the bridges still journal the programmers'
# disconnection for a moment: wait until the positions hold still at the journal's end).
deadline=$(( $(date +%s) + 120 ))
while :; do
    behind=0
    for i in $(seq 1 "$bridges"); do
        end=$(curl -sf --unix-socket "$tmp/b$i/api.sock" http://localhost/v1/health | python3 -c 'import json,sys; print(json.load(sys.stdin)["last_event_id"])')
        pos=$(psql -c "SELECT last_event_id FROM itb_forward_position WHERE bridge_id = 'ws-$i'" 2>/dev/null || echo -1)
        [ "${pos:-0}" -ge "$end" ] || behind=$((behind + 1))
    done
    if [ "$behind" -eq 0 ]; then
        sleep 2
        again=0
        for i in $(seq 1 "$bridges"); do
            end=$(curl -sf --unix-socket "$tmp/b$i/api.sock" http://localhost/v1/health | python3 -c 'import json,sys; print(json.load(sys.stdin)["last_event_id"])')
            pos=$(psql -c "SELECT last_event_id FROM itb_forward_position WHERE bridge_id = 'ws-$i'")
            [ "$pos" -ge "$end" ] || again=1
        done
        [ "$again" -eq 0 ] && break
    fi
    if [ "$(date +%s)" -gt "$deadline" ]; then echo "check-fleet: $behind forwarder(s) never caught up" >&2; exit 1; fi
    sleep 0.5
done
echo "check-fleet: every forwarder is at its bridge's newest event"
psql -c "SELECT 'check-fleet: itb_event rows: ' || count(*) || ', bridges: ' || count(DISTINCT bridge_id) FROM itb_event"
psql -c "SELECT 'check-fleet: PostgreSQL commits: ' || xact_commit || ', rows inserted: ' || tup_inserted FROM pg_stat_database WHERE datname = 'postgres'"

args=()
for i in $(seq 1 "$bridges"); do args+=(--bridge "ws-$i=$tmp/b$i/api.sock"); done
python3 scripts/fleet-verify.py --pg-socket "$pg_socket" "${args[@]}"
# The faults happened: forwarder 1 was killed, PostgreSQL crashed, forwarders noticed.
grep -q "PostgreSQL" "$tmp"/b*/forward.log || { echo "check-fleet: no forwarder logged PostgreSQL's crash" >&2; exit 1; }
echo "check-fleet: passed ($bridges bridges, faults: forwarder SIGKILLs, PostgreSQL crash, bridge SIGKILL, a forwarder stopped and catching up)"
