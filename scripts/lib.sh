# Shared helpers for the project's scripts. Source it; do not run it.

# ensure_packages PKG...: installs the Debian packages that are missing (as root, or with sudo),
# so the README's commands work on a fresh machine that has only the Swift toolchain.
ensure_packages() {
    local missing=()
    local pkg
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "installing Debian packages: ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# The Debian packages the build and the tests need. systemd: systemd-analyze and systemd-sysusers,
# which check the shipped unit and sysusers file (scripts/check-systemd.sh); they work without
# systemd running as PID 1. postgresql: the server (initdb, pg_ctl, psql) that itb-forward's tests
# and the fleet test start as clusters of their own (scripts/pg-scratch.sh); curl: the fleet test
# asks the bridges for their health.
PROJECT_PACKAGES=(python3 pkg-config bc libudev-dev libsqlite3-dev systemd postgresql curl)

# The Debian packages the live benchmark needs beyond the build's: gpsd, which itb-live-bench's
# `gpsd` section runs beside itb-bridged (it starts its own instance on a pty; the package's
# service is not used).
BENCH_PACKAGES=(gpsd)
# The Debian package (scripts/build-deb.sh): dpkg-shlibdeps, lintian, and man to check the pages.
PACKAGING_PACKAGES=(dpkg-dev lintian man-db)
# The Debian 12 guest (scripts/vm-test.sh): QEMU with software emulation, qemu-img for the
# guest's copy-on-write disk, debootstrap for its root file system (with the archive keyring it
# checks the mirror's Release file against: only recommended, so named), mkfs.ext4 -d for the images.
VM_PACKAGES=(qemu-system-x86 qemu-utils debootstrap debian-archive-keyring e2fsprogs)
