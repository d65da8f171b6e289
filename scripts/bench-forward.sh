#!/usr/bin/env bash
# itb-forward's figures for BENCHMARKS.md: the catch-up of a clinic week's journal and one
# forwarder's throughput into a local PostgreSQL (its own cluster, Unix socket).
#
#   scripts/bench-forward.sh BIN_DIR           # BIN_DIR: a release build of itb-bridged, itbctl, itb-forward
#   BENCH_INTERVAL_MS=200 BENCH_PLAY_SECONDS=60 BENCH_COPIES=1 scripts/bench-forward.sh BIN_DIR
#
# 1. A bridge records BENCH_COPIES simulated programmers' clinic weeks (clinic-week played in
#    BENCH_PLAY_SECONDS, a telemetry round every BENCH_INTERVAL_MS) into its journal, with no
#    forwarder running: a bridge that was offline for the week.
# 2. itb-forward starts with an empty database and catches up: the time from its start to the
#    position reaching the journal's newest event, and events per second.
# 3. The same journal forwarded again under another bridge id, into a database that already
#    holds it once (schema migrated, caches warm): events per second.
# 4. Five forwarders at once under five bridge ids, the same journal: PostgreSQL's load with five
#    bridges catching up together.
# PostgreSQL's load: its CPU seconds (postmaster and reaped backends) during each catch-up.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
bin="${1:?usage: scripts/bench-forward.sh BIN_DIR}"
interval="${BENCH_INTERVAL_MS:-200}"
play="${BENCH_PLAY_SECONDS:-60}"
copies="${BENCH_COPIES:-1}"
tmp="$(mktemp -d)"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    bash scripts/pg-scratch.sh stop "$tmp/pg" >/dev/null 2>&1 || true
    rm -rf "$tmp"
}
trap cleanup EXIT
chmod 755 "$tmp"
pg_socket="$(bash scripts/pg-scratch.sh start "$tmp/pg")"
psql() { command psql -h "$pg_socket" -U postgres -d postgres -At -v ON_ERROR_STOP=1 "$@"; }
pg_cpu() { # CPU seconds of the postmaster and its reaped children
    local pid
    pid=$(head -1 "$tmp/pg/data/postmaster.pid")
    awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15 + $16 + $17) / hz}' "/proc/$pid/stat"
}

printf 'discovery = no\nclock_drift_bound_s = 1000000000\n' >"$tmp/bridge.conf"
devices=()
for c in $(seq 1 "$copies"); do
    "$bin/itbctl" simulate --scenario clinic-week --play-in "$play" --interval-ms "$interval" --seed "$c" --exit-at-end \
        --link "$tmp/programmer$c" >/dev/null 2>"$tmp/simulator$c.log" &
    pids+=($!)
    devices+=(--device "$tmp/programmer$c")
done
for c in $(seq 1 "$copies"); do for _ in $(seq 1 100); do [ -e "$tmp/programmer$c" ] && break; sleep 0.05; done; done
"$bin/itb-bridged" --config "$tmp/bridge.conf" "${devices[@]}" --socket "$tmp/api.sock" --state-dir "$tmp/state" \
    --log-level error 2>"$tmp/bridge.log" &
pids+=($!)
echo "bench-forward: recording $copies clinic week(s) (${play} s, rounds every ${interval} ms) with no forwarder"
sleep "$play"
sleep 5
end=$(curl -sf --unix-socket "$tmp/api.sock" http://localhost/v1/health | python3 -c 'import json,sys; print(json.load(sys.stdin)["last_event_id"])')
count=$(sqlite3 "$tmp/state/journal.sqlite" "SELECT count(*) FROM event" 2>/dev/null || echo "?")
echo "bench-forward: the journal holds $count events (newest id $end)"

catch_up() { # catch_up BRIDGE_ID EXTRA_ARGS...: prints seconds and events/s
    local id=$1
    shift
    local cpu0 t0 t1 cpu1 pos
    cpu0=$(pg_cpu)
    t0=$(date +%s.%N)
    "$bin/itb-forward" --socket "$tmp/api.sock" --postgres "postgresql://postgres@/postgres?host=$pg_socket" \
        --bridge-id "$id" --log-level warning "$@" 2>>"$tmp/forward.log" &
    local fw=$!
    while :; do
        pos=$(psql -c "SELECT last_event_id FROM itb_forward_position WHERE bridge_id = '$id'" 2>/dev/null || echo 0)
        [ "${pos:-0}" -ge "$end" ] && break
        sleep 0.02
    done
    t1=$(date +%s.%N)
    kill -TERM "$fw"
    wait "$fw" 2>/dev/null || true
    cpu1=$(pg_cpu)
    local rows
    rows=$(psql -c "SELECT count(*) FROM itb_event WHERE bridge_id = '$id'")
    python3 -c "
s = $t1 - $t0
print(f'bench-forward: {\"$id\"}: {$rows} events in {s:.2f} s = {$rows / s:,.0f} events/s; PostgreSQL CPU {$cpu1 - $cpu0:.2f} s')"
}
catch_up week-catch-up
catch_up week-again

# PostgreSQL's load with five bridges: five forwarders at once, each with its own bridge id,
# catching up the same journal (five workstations back online together: the heaviest moment).
catch_up_five() {
    local cpu0 t0 t1 cpu1 i done_count fws=()
    cpu0=$(pg_cpu)
    t0=$(date +%s.%N)
    for i in 1 2 3 4 5; do
        "$bin/itb-forward" --socket "$tmp/api.sock" --postgres "postgresql://postgres@/postgres?host=$pg_socket" \
            --bridge-id "five-$i" --log-level warning 2>>"$tmp/forward.log" &
        fws+=($!)
    done
    while :; do
        done_count=$(psql -c "SELECT count(*) FROM itb_forward_position WHERE bridge_id LIKE 'five-%' AND last_event_id >= $end")
        [ "$done_count" -ge 5 ] && break
        sleep 0.02
    done
    t1=$(date +%s.%N)
    for i in "${fws[@]}"; do kill -TERM "$i"; wait "$i" 2>/dev/null || true; done
    cpu1=$(pg_cpu)
    local rows
    rows=$(psql -c "SELECT count(*) FROM itb_event WHERE bridge_id LIKE 'five-%'")
    python3 -c "
s = $t1 - $t0
print(f'bench-forward: five bridges at once: {$rows} events in {s:.2f} s = {$rows / s:,.0f} events/s together; PostgreSQL CPU {$cpu1 - $cpu0:.2f} s ({($cpu1 - $cpu0) / s * 100:.0f} % of one core)')"
}
catch_up_five
psql -c "SELECT 'bench-forward: itb_event ' || pg_size_pretty(pg_total_relation_size('itb_event')) || ' for ' || count(*) || ' rows' FROM itb_event"
