#!/usr/bin/env bash
# The proof run (issue 8): every performance figure and every fault test at full size, in one
# command, against release builds. Its report is what BENCHMARKS.md records.
#
#   scripts/proof.sh                  # everything, full size (80 minutes on 2 cores, 2026-12-02: BENCHMARKS.md)
#   PROOF_BENCH_FLAGS=--quick scripts/proof.sh   # the same, small (a smoke run, ~5 minutes)
#
# 1. builds itb-bridged and itbctl in release, and the live benchmark (Benchmarks/ package);
# 2. runs `itb-live-bench` against the release daemon: start-up, latency, idle footprint,
#    fan-out to 1,000 subscribers, full-speed throughput, offline decode, and latency side by side
#    with gpsd (Debian's package, installed here) at 10 and 100 Hz;
# 3. times the pump records on a journal of 5,000 pumps with a year of visits (scripts/pumps-bench.py);
# 4. runs the fault suite (Tests/ITBBridgeTests/Faults) with ITB_PROOF_SCALE=full against the
#    same release daemon: SIGKILL x50, replug x200, line noise over 10^6 frames, API abuse, disk
#    faults, permissions;
# 5. runs schemathesis against the OpenAPI document at full size (scripts/schemathesis.sh);
# 6. the clinic-wide view: the fleet test's long form (five bridges, a 10-minute clinic week,
#    scripts/check-fleet.sh) and itb-forward's catch-up and throughput (scripts/bench-forward.sh);
# 7. runs the Debian package's vm-test at full size (scripts/vm-test.sh: a Debian 12 guest under
#    QEMU, 20 replugs, 20 power cuts during alarm bursts, the watchdog, the package life cycle);
# 8. writes every `FIGURE` line, with the machine and the date, to .proof/report.txt and prints it.
# Exits non-zero if any step fails; the report then says which.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
. scripts/lib.sh
ensure_packages "${PROJECT_PACKAGES[@]}"
# gpsd: itb-live-bench's side-by-side latency section runs its own gpsd next to itb-bridged.
ensure_packages "${BENCH_PACKAGES[@]}"

out="$root/.proof"
rm -rf "$out"
mkdir -p "$out"
failed=()

echo "== release builds"
swift build -c release --product itb-bridged
swift build -c release --product itbctl
swift build -c release --product itb-forward
swift build -c release --package-path Benchmarks --product itb-live-bench
bin="$(swift build -c release --show-bin-path)"
bench="$(swift build -c release --package-path Benchmarks --show-bin-path)/itb-live-bench"

echo "== performance: itb-live-bench ${PROOF_BENCH_FLAGS:-}"
# shellcheck disable=SC2086 # the flags are words on purpose
"$bench" --daemon "$bin/itb-bridged" ${PROOF_BENCH_FLAGS:-} 2>&1 | tee "$out/bench.log" || failed+=("itb-live-bench")

echo "== pump records: a journal of 5,000 pumps with a year of monthly visits (scripts/pumps-bench.py)"
pumps_flags=()
[ "${PROOF_BENCH_FLAGS:-}" = "--quick" ] && pumps_flags=(--pumps 500 --requests 300)
python3 scripts/pumps-bench.py --daemon "$bin/itb-bridged" "${pumps_flags[@]}" 2>&1 | tee "$out/pumps.log" || failed+=("pumps-bench")

echo "== faults: the fault suite at full size against the release daemon"
# The suites in Tests/ITBBridgeTests/Faults/, one at a time (--no-parallel): their figures are
# then not disturbed by one another.
fault_suites="KillDuringAlarmBurstTests|ReplugTests|LineNoiseTests|APIAbuseTests|DiskFaultTests|PermissionTests"
scale=full
[ "${PROOF_BENCH_FLAGS:-}" = "--quick" ] && scale=short
swift build --build-tests
ITB_PROOF_SCALE=$scale ITB_DAEMON="$bin/itb-bridged" \
    swift test --skip-build --no-parallel --filter "$fault_suites" 2>&1 | tee "$out/faults.log" || failed+=("fault suite")

echo "== faults: schemathesis against the OpenAPI document"
ITB_PROOF_SCALE=$scale ITB_DAEMON="$bin/itb-bridged" bash scripts/schemathesis.sh 2>&1 | tee "$out/schemathesis.log" \
    || failed+=("schemathesis")

echo "== the clinic-wide view: the fleet test, long form, and itb-forward's figures"
FLEET_PLAY_SECONDS=600 bash scripts/check-fleet.sh "$bin" 2>&1 | tee "$out/fleet.log" || failed+=("fleet test")
BENCH_PLAY_SECONDS=120 BENCH_INTERVAL_MS=20 BENCH_COPIES=4 bash scripts/bench-forward.sh "$bin" 2>&1 | tee "$out/forward.log" \
    || failed+=("bench-forward")

echo "== the Debian package in a Debian 12 guest: scripts/vm-test.sh at full size"
VM_TEST_SCALE=$scale bash scripts/vm-test.sh 2>&1 | tee "$out/vm-test.log" || failed+=("vm-test")

{
    echo "# itb-bridge proof run: $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD)$(git diff --quiet || echo ' (uncommitted changes)')"
    echo "# machine: $(nproc) x $(uname -m) ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(awk '/MemTotal/ {printf "%.0f GB", $2/1048576}' /proc/meminfo), Linux $(uname -r), $(swift --version 2>/dev/null | head -1)"
    echo "# command: scripts/proof.sh ${PROOF_BENCH_FLAGS:-}"
    grep -h "^FIGURE " "$out/bench.log" "$out/pumps.log" "$out/faults.log" "$out/schemathesis.log" "$out/vm-test.log" || true
    grep -h "^bench-forward: \|^fleet-verify: \|^check-fleet: passed" "$out/fleet.log" "$out/forward.log" || true
    if [ ${#failed[@]} -gt 0 ]; then echo "# FAILED: ${failed[*]}"; fi
} > "$out/report.txt"
echo
echo "== report (.proof/report.txt)"
cat "$out/report.txt"
[ ${#failed[@]} -eq 0 ]
