#!/usr/bin/env bash
# Makes Tests/ITBBridgeTests/Fixtures/journal-v1.sqlite: a journal written by the release that
# landed before pumps were recorded (commit b059862, journal schema v1), so that the migration
# test opens a real one. It runs that release's daemon with its own simulator through three
# scenarios (a refill with a concentration change, a motor stall, a replug) on one journal.
#
#   scripts/make-v1-journal.sh                       # checks the commit out under .build-v1/ and builds it
#   ITB_V1_BIN_DIR=DIR scripts/make-v1-journal.sh    # uses itb-bridged and itbctl built from that commit
#
# The result is deterministic in shape (the same scenarios, pump and alarms), not in bytes
# (times and ids depend on the run). Regenerate it only when the fixture must change; the test
# reads whatever the file holds and checks the migration keeps all of it.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
commit=b059862
bin="${ITB_V1_BIN_DIR:-}"
if [ -z "$bin" ]; then
    work="$root/.build-v1"
    if [ ! -d "$work/src" ]; then
        git worktree add --detach "$work/src" "$commit"
    fi
    (cd "$work/src" && swift build --product itb-bridged && swift build --product itbctl)
    bin="$(cd "$work/src" && swift build --show-bin-path)"
fi
for tool in itb-bridged itbctl; do
    [ -x "$bin/$tool" ] || { echo "make-v1-journal: $bin/$tool is not an executable" >&2; exit 1; }
done

tmp="$(mktemp -d)"
cleanup() {
    [ -n "${daemon:-}" ] && kill "$daemon" 2>/dev/null || true
    [ -n "${sim:-}" ] && kill "$sim" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT
"$bin/itb-bridged" --no-discovery --device "$tmp/programmer" --device "$tmp/clinic" --socket "$tmp/api.sock" --state-dir "$tmp/state" \
    --log-level warning >"$tmp/daemon.log" 2>&1 &
daemon=$!
for scenario in refill motor-stall replug; do
    "$bin/itbctl" simulate --scenario "$scenario" --accel 200000 --link "$tmp/programmer" >"$tmp/sim-$scenario.log" 2>&1 &
    sim=$!
    sleep 12
    kill "$sim" 2>/dev/null || true
    wait "$sim" 2>/dev/null || true
    sim=""
    sleep 1
done
# A programmer that interrogates two pumps in turn (the landed simulator's PUMP_SESSION goes out
# before the daemon opens the port, so its sessions never reach the journal).
python3 scripts/two-pumps-programmer.py --link "$tmp/clinic" --serial PGM-V1
sleep 1
kill "$daemon"
wait "$daemon" 2>/dev/null || true
daemon=""
out="$root/Tests/ITBBridgeTests/Fixtures/journal-v1.sqlite"
# One self-contained file (no WAL beside it), through SQLite's online backup.
python3 - "$tmp/state/journal.sqlite" "$out" <<'PY'
import sqlite3, sys
src = sqlite3.connect(sys.argv[1])
dst = sqlite3.connect(sys.argv[2] + ".tmp")
src.backup(dst)
dst.execute("PRAGMA journal_mode=DELETE")
dst.execute("VACUUM")
dst.close(); src.close()
import os; os.replace(sys.argv[2] + ".tmp", sys.argv[2])
c = sqlite3.connect(sys.argv[2])
print("make-v1-journal: %s: %d events, %d alarms, %d refills, schema %s" % (sys.argv[2],
      c.execute("select count(*) from event").fetchone()[0], c.execute("select count(*) from alarm").fetchone()[0],
      c.execute("select count(*) from refill").fetchone()[0],
      [r[0] for r in c.execute("select identifier from grdb_migrations")]))
PY
