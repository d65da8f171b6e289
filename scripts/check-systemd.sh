#!/usr/bin/env bash
# Checks the shipped systemd files with systemd's own tools (scripts/test.sh runs it; the Debian
# package `systemd` provides them, and they work without systemd running as PID 1):
#
#   1. `systemd-analyze verify` on each unit as installed (itb-bridged, itb-forward): no error and
#      no warning;
#   2. `systemd-sysusers --root` creates the user and groups from the sysusers.d file;
#   3. `systemd-analyze security --offline=true` on each unit: overall exposure at most 2.0
#      (README.md has the figures).
#
# ITB_BIN_DIR: where the built itb-bridged, itbctl and itb-forward are (default: the debug build directory).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="${ITB_BIN_DIR:-$(cd "$root" && swift build --show-bin-path)}"
for tool in systemd-analyze systemd-sysusers; do
    command -v "$tool" >/dev/null || { echo "check-systemd.sh: $tool is missing: apt-get install systemd" >&2; exit 1; }
done
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# Stage the files as a package would lay them out.
DESTDIR="$tmp/root" PREFIX=/usr ITB_BIN_DIR="$bin" bash "$root/scripts/install.sh" >/dev/null
units="$tmp/root/usr/lib/systemd/system"
mkdir "$tmp/verify"
for name in itb-bridged itb-forward; do
    echo "-- systemd-analyze verify $name.service"
    # verify checks that ExecStart= names an executable: point it at the staged binary.
    sed "s|^ExecStart=/usr/bin/$name |ExecStart=$tmp/root/usr/bin/$name |" "$units/$name.service" > "$tmp/verify/$name.service"
    grep -q "^ExecStart=$tmp/root/usr/bin/$name " "$tmp/verify/$name.service"
    if ! out="$(systemd-analyze verify "$tmp/verify/$name.service" 2>&1)" || [ -n "$out" ]; then
        echo "systemd-analyze verify reports problems in systemd/$name.service:"
        echo "$out"
        exit 1
    fi
    echo "ok"
done

echo "-- systemd-sysusers itb-bridge.conf"
mkdir -p "$tmp/root/etc"
systemd-sysusers --root="$tmp/root" "$tmp/root/usr/lib/sysusers.d/itb-bridge.conf" >/dev/null 2>&1
grep -q '^itb-bridge:x:[0-9]*:[0-9]*:.*:/var/lib/itb-bridge:' "$tmp/root/etc/passwd" \
    || { echo "systemd-sysusers did not create the user itb-bridge"; exit 1; }
grep -q '^itb-bridge:x:' "$tmp/root/etc/group" || { echo "systemd-sysusers did not create the group itb-bridge"; exit 1; }
grep -q '^itb-programmer:x:[0-9]*:itb-bridge$' "$tmp/root/etc/group" \
    || { echo "systemd-sysusers did not create the group itb-programmer with member itb-bridge"; exit 1; }
echo "ok"

for name in itb-bridged itb-forward; do
    echo "-- systemd-analyze security --offline=true $name.service (at most 2.0)"
    # --threshold is in tenths: 20 means an overall exposure of 2.0.
    if ! out="$(systemd-analyze security --offline=true --threshold=20 "$units/$name.service" 2>&1)"; then
        echo "$out"
        echo "the unit's exposure is above 2.0: tighten systemd/$name.service (and update README.md)"
        exit 1
    fi
    echo "$out" | grep "Overall exposure level"
    # README.md and the unit's header state the figure; it must be the one measured.
    figure="$(echo "$out" | grep -oE "Overall exposure level for $name.service: [0-9]+\.[0-9]+" | grep -oE '[0-9]+\.[0-9]+$')"
    # itb-bridged's figure is the README's first "overall exposure"; itb-forward's is named.
    stated="overall exposure $figure"
    [ "$name" = itb-forward ] && stated="itb-forward.service: overall exposure $figure"
    if ! grep -q "$stated\b" "$root/README.md"; then
        echo "README.md does not state the measured exposure of $name.service (\"$stated\"): update it"
        exit 1
    fi
    if ! grep -q "exposure $figure (\"OK\")" "$root/systemd/$name.service"; then
        echo "systemd/$name.service's header does not state the measured exposure, $figure: update it"
        exit 1
    fi
done
