#!/usr/bin/env bash
# Property-based API testing with schemathesis against the daemon's own OpenAPI document
# (GET /v1/openapi.json, from Sources/ITBBridge/Resources/openapi.json): no 5xx, every status code
# and every response body as documented, the right content types, and 405 for a method a path
# does not serve.
#
#   scripts/schemathesis.sh                        # short run (CI): a few examples per operation
#   ITB_PROOF_SCALE=full scripts/schemathesis.sh   # the proof run: many more
#   ITB_DAEMON=.build/release/itb-bridged scripts/schemathesis.sh
#
# It starts itb-bridged (the debug build unless ITB_DAEMON names one) on a scratch directory with
# a simulated programmer (`itbctl simulate --scenario motor-stall`, so there are devices, status,
# reservoir and an alarm to read and acknowledge), and bridges TCP on 127.0.0.1 to the daemon's
# Unix socket with socat: schemathesis speaks HTTP over TCP only. GET /v1/events is left out
# (an SSE stream never ends, so every case would time out); the Swift tests cover it.
# schemathesis goes into a virtualenv under .build/ (pinned below). Prints one line
#   FIGURE fault.schemathesis: operations=.. test_cases=.. failures=.. server_errors=..
# and exits non-zero when schemathesis found anything.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
. scripts/lib.sh
ensure_packages python3 python3-venv socat

SCHEMATHESIS_VERSION=4.32.5
if [ "${ITB_PROOF_SCALE:-}" = full ]; then
    scale=full; max_examples=500
else
    scale=short; max_examples=10
fi

# The virtualenv (Debian's python3 with python3-venv; any python3 with venv works).
venv="$root/.build/schemathesis-venv"
if ! "$venv/bin/st" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
    rm -rf "$venv"
    python3 -m venv "$venv" 2>/dev/null || /usr/bin/python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

# The daemon and itbctl.
if [ -n "${ITB_DAEMON:-}" ]; then
    daemon="$ITB_DAEMON"
    itbctl="$(dirname "$ITB_DAEMON")/itbctl"
else
    for product in itb-bridged itbctl; do
        swift build --product "$product" >"$root/.build/schemathesis-build.log" 2>&1 \
            || { cat "$root/.build/schemathesis-build.log" >&2; exit 1; }
    done
    bin="$(swift build --show-bin-path)"
    daemon="$bin/itb-bridged"; itbctl="$bin/itbctl"
fi
[ -x "$daemon" ] && [ -x "$itbctl" ] || { echo "schemathesis.sh: $daemon or $itbctl is not built" >&2; exit 1; }

tmp="$(mktemp -d)"
pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT

"$itbctl" simulate --scenario motor-stall --accel 86400 --link "$tmp/programmer" >"$tmp/simulator.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [ -e "$tmp/programmer" ] && break; sleep 0.1; done
"$daemon" --no-discovery --device "$tmp/programmer" --socket "$tmp/api.sock" --state-dir "$tmp/state" \
    --log-level warning >"$tmp/daemon.log" 2>&1 &
pids+=($!)

# A free TCP port on loopback, bridged to the socket.
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
socat "TCP-LISTEN:$port,bind=127.0.0.1,reuseaddr,fork" "UNIX-CONNECT:$tmp/api.sock" &
pids+=($!)
base="http://127.0.0.1:$port"

# Ready when the programmer is identified and has reported status and an alarm.
ready=""
for _ in $(seq 300); do
    if curl -sf --unix-socket "$tmp/api.sock" http://localhost/v1/alarms 2>/dev/null | grep -q '"device_alarm_id"' \
        && curl -sf "$base/v1/health" >/dev/null 2>&1; then
        ready=yes; break
    fi
    sleep 0.1
done
if [ -z "$ready" ]; then
    echo "schemathesis.sh: the daemon did not come up with data; its log:" >&2
    cat "$tmp/daemon.log" >&2
    exit 1
fi

echo "schemathesis $SCHEMATHESIS_VERSION against $daemon ($scale run: $max_examples examples per operation)"
status=0
# (from the scratch directory: schemathesis keeps a cache in the working directory)
(cd "$tmp" && "$venv/bin/st" run "$base/v1/openapi.json" \
    --checks not_a_server_error,status_code_conformance,response_schema_conformance,content_type_conformance,unsupported_method \
    --exclude-path /v1/events \
    --max-examples "$max_examples" --seed 20261125 --request-timeout 10 \
    --no-color --report json --report-dir "$tmp/report") >"$tmp/schemathesis.log" 2>&1 || status=$?
if grep -q "FAILURES" "$tmp/schemathesis.log"; then
    sed -n '/FAILURES/,$p' "$tmp/schemathesis.log"
else
    sed -n '/SUMMARY/,$p' "$tmp/schemathesis.log"
fi

# The daemon must still be up, and have logged no internal error.
kill -0 "${pids[1]}" 2>/dev/null || { echo "schemathesis.sh: itb-bridged died during the run" >&2; status=1; }
if grep -q "internal error" "$tmp/daemon.log"; then
    echo "schemathesis.sh: itb-bridged logged internal errors:" >&2
    grep "internal error" "$tmp/daemon.log" | head -5 >&2
    status=1
fi

report="$(ls "$tmp"/report/*.json 2>/dev/null | head -1)"
if [ -z "$report" ]; then
    echo "schemathesis.sh: schemathesis wrote no report (exit $status):" >&2
    tail -40 "$tmp/schemathesis.log" >&2
    exit 1
fi
python3 - "$report" "$scale" <<'EOF'
import json, sys
report = json.load(open(sys.argv[1]))
cases = report["test_cases"]
server = sum(f.get("count", 1) for f in report["failures"] if "ServerError" in f.get("type", ""))
print(f"FIGURE fault.schemathesis: scale={sys.argv[2]} operations={report['operations']['tested']} "
      f"test_cases={cases['generated']} failures={cases['with_failures']} errors={cases['errored'] + len(report['errors'])} "
      f"server_errors={server} seconds={report['running_time']:.1f}")
EOF
exit "$status"
