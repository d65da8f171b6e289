#!/usr/bin/env bash
# Installs the Debian package in a real Debian 12 guest (QEMU, software emulation) with systemd
# and udev, hot-plugs emulated FTDI programmers driven by `itbctl simulate` on this host, and
# checks what the package promises: the udev rule, the sandboxed unit, journald fields, unplug
# and replug, the watchdog, power cuts, and the package's life cycle (issue 14).
#
#   scripts/vm-test.sh                      # short: what CI runs (VM_TEST_SCALE=short)
#   VM_TEST_SCALE=full scripts/vm-test.sh   # 20 replugs and 20 power cuts (scripts/proof.sh)
#   scripts/vm-test.sh image                # only build (or find) the cached guest image
#
# 1. installs the host packages it needs (QEMU, debootstrap, e2fsprogs, dpkg-dev, lintian);
# 2. builds the guest image once and keeps it in .vm/cache/ (git-ignored): debootstrap
#    --variant=minbase of bookworm from the mirror this host's apt sources name, plus a small
#    agent unit that runs the test's commands from a virtio-serial port; the image is rebuilt
#    when IMAGE_REV or the package list below changes (rm -rf .vm to force it);
# 3. builds the package twice with scripts/build-deb.sh: VERSION, and VERSION+vmtest1 from the
#    same binaries, for the upgrade test (VM_DEB / VM_DEB_NEXT: use these instead);
# 4. runs scripts/vm-test.py (QMP, the agent, the simulators and every check), which prints
#    FIGURE lines and, when everything passed, "vm-test: N passed, 0 failed".
# Every wait has a timeout; QEMU and the simulators are stopped on exit, whatever happens.
#
# Environment: VM_TEST_SCALE (short|full), VM_SEED (the power cuts' random moments), VM_REPLUGS
# and VM_POWER_CUTS (override the scale's counts), VM_KEEP=1 (keep .vm/run/ with the console log
# and the guest disk after a run).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
. scripts/lib.sh

die() { echo "vm-test.sh: $*" >&2; exit 1; }

scale="${VM_TEST_SCALE:-short}"
case "$scale" in short|full) ;; *) die "VM_TEST_SCALE must be short or full, not '$scale'" ;; esac
[ "$(id -u)" -eq 0 ] || die "run as root: debootstrap, mkfs.ext4 -d of a root file system and chroot need it"

ensure_packages "${PROJECT_PACKAGES[@]}" "${PACKAGING_PACKAGES[@]}" "${VM_PACKAGES[@]}"

# --- 2. the guest image ---------------------------------------------------------------------
# What the guest has besides minbase. The package's dependencies are there already, as on a
# clinic's machine that installs it with apt: the guest has no network.
IMAGE_REV=1
# (curl and sqlite3 for the checks, jq for reading JSON, usbutils for lsusb.)
guest_packages="systemd,systemd-sysv,udev,kmod,linux-image-amd64,curl,jq,sqlite3,libudev1,libsqlite3-0,usbutils,procps,ca-certificates"
key="$(printf '%s\n' "$IMAGE_REV" "$guest_packages" bookworm | sha256sum | cut -c1-12)"
cache="$root/.vm/cache/bookworm-$key"

# The Debian mirror this host uses: read from its apt sources at run time, never written into
# the repository.
host_mirror() {
    local url=""
    if compgen -G "/etc/apt/sources.list.d/*.sources" >/dev/null; then
        url="$(awk 'BEGIN{RS=""} /Types:[^\n]*deb([ \n]|$)/ && /Suites:[^\n]*bookworm([ \n]|$)/ {
                 if (match($0, /URIs:[ \t]*[^ \t\n]+/)) { s = substr($0, RSTART, RLENGTH); sub(/URIs:[ \t]*/, "", s); print s; exit } }' \
               /etc/apt/sources.list.d/*.sources)"
    fi
    if [ -z "$url" ] && [ -f /etc/apt/sources.list ]; then
        url="$(awk '$1 == "deb" && $0 ~ / bookworm / { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' /etc/apt/sources.list)"
    fi
    [ -n "$url" ] || die "no Debian bookworm mirror in this host's apt sources (/etc/apt/sources.list.d/*.sources, /etc/apt/sources.list)"
    echo "$url"
}

build_image() {
    local work="$root/.vm/build"
    # A debootstrap that finished is kept until the image is made from it.
    if [ ! -f "$work/debootstrap-ok-$key" ]; then
        rm -rf "$work"
        mkdir -p "$work"
        local mirror
        mirror="$(host_mirror)"
        echo "== guest image: debootstrap bookworm (minbase) from the host's mirror"
        local t0=$SECONDS
        timeout 1200 nice -n 5 debootstrap --variant=minbase --include="$guest_packages" bookworm "$work/rootfs" "$mirror" \
            > "$work/debootstrap.log" 2>&1 || { tail -30 "$work/debootstrap.log"; die "debootstrap failed (log above)"; }
        echo "FIGURE vm.debootstrap_s $((SECONDS - t0))"
        touch "$work/debootstrap-ok-$key"
    fi
    local r="$work/rootfs"
    echo itb-vm > "$r/etc/hostname"
    printf '127.0.0.1 localhost\n127.0.1.1 itb-vm\n' > "$r/etc/hosts"
    cat > "$r/etc/fstab" <<'EOF'
LABEL=root   /        ext4 errors=remount-ro 0 1
LABEL=vmtest /vmtest  ext4 ro,nofail         0 0
EOF
    mkdir -p "$r/vmtest"
    # The agent: runs the host's commands, read from a virtio-serial port (vm-test.py). It lives
    # on the test disk, so the cached image holds only this unit.
    cat > "$r/etc/systemd/system/vmtest-agent.service" <<'EOF'
[Unit]
Description=itb-bridge vm-test agent (commands from the host on /dev/virtio-ports/ctl)
Requires=vmtest.mount
After=vmtest.mount

[Service]
ExecStart=/bin/bash /vmtest/agent.sh
Restart=always
RestartSec=1

[Install]
WantedBy=multi-user.target
EOF
    ln -sf /etc/systemd/system/vmtest-agent.service "$r/etc/systemd/system/multi-user.target.wants/vmtest-agent.service"
    # No login prompt on the console (the console log is for reading).
    ln -sf /dev/null "$r/etc/systemd/system/serial-getty@ttyS0.service"
    # A persistent journal, so that a power cut's aftermath can be read after the reboot.
    mkdir -p "$r/var/log/journal"
    rm -f "$r"/var/cache/apt/archives/*.deb
    mkdir -p "$work/out"
    cp "$(readlink -f "$r/vmlinuz")" "$work/out/vmlinuz"
    cp "$(readlink -f "$r/initrd.img")" "$work/out/initrd.img"
    echo "== guest image: mkfs.ext4 -d"
    mkfs.ext4 -q -F -L root -d "$r" "$work/out/root.raw" 3G
    rm -rf "$cache"
    mkdir -p "$(dirname "$cache")"
    mv "$work/out" "$cache"
    rm -rf "$work"
}

if [ -f "$cache/root.raw" ] && [ -f "$cache/vmlinuz" ] && [ -f "$cache/initrd.img" ]; then
    echo "== guest image: cached in $cache"
else
    build_image
fi

if [ "${1:-}" = image ]; then exit 0; fi

# --- 3. the packages ------------------------------------------------------------------------
version="$(tr -d ' \n' < VERSION)"
deb="${VM_DEB:-}"
deb_next="${VM_DEB_NEXT:-}"
if [ -z "$deb" ]; then
    bash scripts/build-deb.sh
    deb="$root/dist/itb-bridge_${version}_amd64.deb"
fi
if [ -z "$deb_next" ]; then
    bin="$(swift build -c release --static-swift-stdlib --scratch-path "${SCRATCH:-$root/.build-deb}" --show-bin-path)"
    LINT=0 DEB_VERSION="${version}+vmtest1" ITB_BIN_DIR="$bin" bash scripts/build-deb.sh
    deb_next="$root/dist/itb-bridge_${version}+vmtest1_amd64.deb"
fi
[ -f "$deb" ] && [ -f "$deb_next" ] || die "missing package: $deb or $deb_next"
itbctl="${VM_ITBCTL:-$(swift build -c release --static-swift-stdlib --scratch-path "${SCRATCH:-$root/.build-deb}" --show-bin-path)/itbctl}"
[ -x "$itbctl" ] || die "no itbctl at $itbctl (the simulator on the host end of the programmers)"

# --- 4. the test ----------------------------------------------------------------------------
run="$root/.vm/run"
rm -rf "$run"
mkdir -p "$run/testdisk"
cp "$deb" "$run/testdisk/itb-bridge.deb"
cp "$deb_next" "$run/testdisk/itb-bridge-next.deb"
install -m 0755 scripts/vm-agent.sh "$run/testdisk/agent.sh"
mkfs.ext4 -q -F -L vmtest -d "$run/testdisk" "$run/test.img" 256M
# The guest writes to a copy-on-write overlay; the cached image stays as built. (Not -snapshot:
# the power cuts need what the guest wrote to survive the reset.)
qemu-img create -q -f qcow2 -b "$cache/root.raw" -F raw "$run/root.qcow2"

# Whatever happens to vm-test.py, no QEMU or simulator outlives this script.
cleanup() {
    local f pid
    for f in "$run"/qemu.pid "$run"/*.sim.pid; do
        [ -f "$f" ] || continue
        pid="$(cat "$f" 2>/dev/null || true)"
        if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
    done
}
trap cleanup EXIT

set +e
VM_RUN="$run" VM_CACHE="$cache" VM_ITBCTL="$itbctl" VM_SCALE="$scale" \
    VM_DEB_VERSION="$(dpkg-deb -f "$deb" Version)" VM_DEB_NEXT_VERSION="$(dpkg-deb -f "$deb_next" Version)" \
    python3 scripts/vm-test.py
rc=$?
set -e
if [ "${VM_KEEP:-0}" != 1 ]; then
    rm -f "$run/root.qcow2" "$run/test.img"
fi
exit $rc
