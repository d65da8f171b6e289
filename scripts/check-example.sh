#!/usr/bin/env bash
# Runs the example clinic tool (examples/refill_worklist.py) against a real itb-bridged fed by a
# scripted programmer that interrogates two pumps (scripts/two-pumps-programmer.py), and checks
# what it prints: the worklist with both pumps, and the first pump's refill. scripts/test.sh runs it.
#
#   scripts/check-example.sh [BIN_DIR]     # BIN_DIR: where itb-bridged is (default: swift build's)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
bin="${1:-$(swift build --show-bin-path)}"
tmp="$(mktemp -d)"
cleanup() {
    [ -n "${daemon:-}" ] && kill "$daemon" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT
"$bin/itb-bridged" --no-discovery --device "$tmp/programmer" --socket "$tmp/api.sock" --state-dir "$tmp/state" \
    --log-level warning >"$tmp/daemon.log" 2>&1 &
daemon=$!
python3 scripts/two-pumps-programmer.py --link "$tmp/programmer" --serial PGM-EXAMPLE
status=0
python3 examples/refill_worklist.py --socket "$tmp/api.sock" >"$tmp/out.txt" 2>&1 || status=$?
cat "$tmp/out.txt"
fail() { echo "check-example: $*" >&2; echo "--- daemon log" >&2; cat "$tmp/daemon.log" >&2; exit 1; }
[ "$status" -eq 0 ] || fail "examples/refill_worklist.py exited $status"
grep -q "^2-PR-V1-B " "$tmp/out.txt" || fail "the worklist lacks pump 2-PR-V1-B"
grep -q "^1-NGP-V1-A " "$tmp/out.txt" || fail "the worklist lacks pump 1-NGP-V1-A"
grep -q "^2 pump(s)$" "$tmp/out.txt" || fail "the worklist does not count 2 pumps"
# Each pump raised low_reservoir once in its own session: one active alarm each, never joined.
grep -qE "^2-PR-V1-B .* 1$" "$tmp/out.txt" || fail "pump 2-PR-V1-B does not show its own active alarm"
grep -qE "^1-NGP-V1-A .* 1$" "$tmp/out.txt" || fail "pump 1-NGP-V1-A does not show its own active alarm"
grep -q "^Refills of " "$tmp/out.txt" || fail "no refills printed"
grep -qE " 400 +$| 400 " "$tmp/out.txt" || fail "the refill's 400 µL discrepancy is not shown"
# A pump the bridge does not know: a clear error, exit 1.
if python3 examples/refill_worklist.py --socket "$tmp/api.sock" --pump 9-NOPE >"$tmp/err.txt" 2>&1; then
    fail "an unknown pump did not fail"
fi
grep -q "unknown_pump" "$tmp/err.txt" || fail "an unknown pump is not reported as unknown_pump: $(cat "$tmp/err.txt")"
echo "check-example: examples/refill_worklist.py printed the worklist and refills of 2 pumps"
