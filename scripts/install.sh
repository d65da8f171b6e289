#!/usr/bin/env bash
# Installs itb-bridge where a distribution package would put it, or removes it again.
#
#   scripts/install.sh [install]      # build (swift build -c release) and install
#   scripts/install.sh uninstall      # remove what install put there
#
# Environment:
#   PREFIX       where binaries and vendor files go (default /usr/local; a distribution uses /usr)
#   DESTDIR      staging root prepended to every path (default empty: the live system). With
#                DESTDIR set nothing outside it is touched and root is not needed.
#   SYSCONFDIR   configuration root (default /etc)
#   ITB_BIN_DIR  directory holding already built itb-bridged, itbctl and itb-forward; when unset, the script
#                builds them with `swift build -c release`
#
# Layout (with PREFIX=/usr):
#   /usr/bin/itb-bridged, /usr/bin/itbctl, /usr/bin/itb-forward    0755
#   /usr/lib/systemd/system/itb-bridged.service                   0644
#   /usr/lib/systemd/system/itb-forward.service                   0644 (disabled: README, "Clinic-wide view")
#   /usr/lib/sysusers.d/itb-bridge.conf                           0644
#   /usr/lib/udev/rules.d/60-itb-programmer.rules                 0644
#   /usr/share/doc/itb-bridge/README.md, itb-bridged.conf         0644 (the shipped default)
#   /usr/share/doc/itb-bridge/itb-forward.conf                    0644 (the shipped default)
#   /etc/itb-bridge/itb-bridged.conf, itb-forward.conf            0644, never overwritten
# No tmpfiles.d entry is needed: the unit's RuntimeDirectory=, StateDirectory= and
# ConfigurationDirectory= create /run/itb-bridge, /var/lib/itb-bridge and /etc/itb-bridge.
#
# On the live system (no DESTDIR) install also creates the users (systemd-sysusers) and reloads
# udev and systemd; uninstall first stops and disables the service. Neither ever removes the
# journal in /var/lib/itb-bridge: it holds the alarm history.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
action="${1:-install}"
PREFIX="${PREFIX:-/usr/local}"
SYSCONFDIR="${SYSCONFDIR:-/etc}"
DESTDIR="${DESTDIR:-}"

case "$PREFIX" in /*) ;; *) echo "install.sh: PREFIX must be an absolute path, not '$PREFIX'" >&2; exit 2 ;; esac
case "$SYSCONFDIR" in /*) ;; *) echo "install.sh: SYSCONFDIR must be an absolute path, not '$SYSCONFDIR'" >&2; exit 2 ;; esac
PREFIX="${PREFIX%/}"
SYSCONFDIR="${SYSCONFDIR%/}"

bindir="$DESTDIR$PREFIX/bin"
unitdir="$DESTDIR$PREFIX/lib/systemd/system"
sysusersdir="$DESTDIR$PREFIX/lib/sysusers.d"
udevdir="$DESTDIR$PREFIX/lib/udev/rules.d"
docdir="$DESTDIR$PREFIX/share/doc/itb-bridge"
confdir="$DESTDIR$SYSCONFDIR/itb-bridge"
# The daemon's config: its `match` lines make the udev rule (below).
config="$confdir/itb-bridged.conf"

# Every file install lays down except the config, for uninstall to remove.
files=(
    "$bindir/itb-bridged" "$bindir/itbctl" "$bindir/itb-forward"
    "$unitdir/itb-bridged.service" "$unitdir/itb-forward.service"
    "$sysusersdir/itb-bridge.conf"
    "$udevdir/60-itb-programmer.rules"
    "$docdir/README.md" "$docdir/itb-bridged.conf" "$docdir/itb-forward.conf"
)

live() { [ -z "$DESTDIR" ]; }
systemd_running() { live && [ -d /run/systemd/system ] && command -v systemctl >/dev/null; }

do_install() {
    local bin="${ITB_BIN_DIR:-}"
    if [ -z "$bin" ]; then
        (cd "$root" && swift build -c release)
        bin="$(cd "$root" && swift build -c release --show-bin-path)"
    fi
    for exe in itb-bridged itbctl itb-forward; do
        if [ ! -x "$bin/$exe" ]; then
            echo "install.sh: $bin/$exe is missing or not executable; build it (swift build -c release) or set ITB_BIN_DIR" >&2
            exit 1
        fi
    done

    # Directories are created when missing; an existing one keeps its owner and mode.
    local dir
    for dir in "$bindir" "$unitdir" "$sysusersdir" "$udevdir" "$docdir" "$confdir"; do
        [ -d "$dir" ] || install -d -m 0755 "$dir"
    done
    install -m 0755 "$bin/itb-bridged" "$bindir/itb-bridged"
    install -m 0755 "$bin/itbctl" "$bindir/itbctl"
    install -m 0755 "$bin/itb-forward" "$bindir/itb-forward"
    # The units name the binaries and the configs by their installed paths. itb-forward's unit is
    # installed, not enabled: it needs a PostgreSQL to be configured first.
    local unit
    for unit in itb-bridged itb-forward; do
        sed -e "s|/usr/bin/itb-bridged|$PREFIX/bin/itb-bridged|g" \
            -e "s|/usr/bin/itb-forward|$PREFIX/bin/itb-forward|g" \
            -e "s|/etc/itb-bridge/|$SYSCONFDIR/itb-bridge/|g" \
            -e "s|file:/usr/share/doc/itb-bridge/|file:$PREFIX/share/doc/itb-bridge/|g" \
            "$root/systemd/$unit.service" > "$unitdir/$unit.service.tmp"
        chmod 0644 "$unitdir/$unit.service.tmp"
        mv "$unitdir/$unit.service.tmp" "$unitdir/$unit.service"
    done
    install -m 0644 "$root/systemd/itb-bridge.sysusers" "$sysusersdir/itb-bridge.conf"
    # The site's own adapter ids are set in one place, the config's `match` lines; the udev rule
    # is made from them (each install), so the rule and the daemon cannot disagree.
    local matches
    matches="$(site_matches)"
    udev_rule "$matches" > "$udevdir/60-itb-programmer.rules.tmp"
    chmod 0644 "$udevdir/60-itb-programmer.rules.tmp"
    mv "$udevdir/60-itb-programmer.rules.tmp" "$udevdir/60-itb-programmer.rules"
    install -m 0644 "$root/README.md" "$docdir/README.md"
    install -m 0644 "$root/systemd/itb-bridged.conf" "$docdir/itb-bridged.conf"
    install -m 0644 "$root/systemd/itb-forward.conf" "$docdir/itb-forward.conf"
    local name
    for name in itb-bridged itb-forward; do
        if [ -e "$confdir/$name.conf" ]; then
            echo "kept the existing $confdir/$name.conf (the shipped default is $docdir/$name.conf)"
        else
            install -m 0644 "$root/systemd/$name.conf" "$confdir/$name.conf"
        fi
    done

    if [ -z "$matches" ]; then
        warn_generic_adapter
    else
        echo "udev rule and daemon match this site's programmer adapters (match in $config): $(echo $matches)"
    fi
    if live; then
        command -v systemd-sysusers >/dev/null && systemd-sysusers "$sysusersdir/itb-bridge.conf"
        if command -v udevadm >/dev/null && [ -S /run/udev/control ]; then
            udevadm control --reload
            udevadm trigger --subsystem-match=tty --action=add
        fi
        systemd_running && systemctl daemon-reload
        echo "installed; start it with: systemctl enable --now itb-bridged"
    else
        echo "installed into $DESTDIR"
    fi
}

# site_matches: the `match = VVVV:PPPP[:SERIAL]` lines set (not commented out) in the config, one
# per line; nothing when the config keeps the default. Exits on a malformed one.
site_matches() {
    [ -e "$config" ] || return 0
    local value
    while IFS= read -r value; do
        if ! printf '%s\n' "$value" | grep -Eq '^[0-9A-Fa-f]{1,4}:[0-9A-Fa-f]{1,4}(:[^[:space:]:"]+)?$'; then
            echo "install.sh: $config: match = $value is not VVVV:PPPP or VVVV:PPPP:SERIAL (hex USB ids); check it with itb-bridged --check-config" >&2
            exit 1
        fi
        printf '%s\n' "$value"
    done < <(sed -n -E 's/^[[:space:]]*match[[:space:]]*=[[:space:]]*([^#[:space:]]*).*$/\1/p' "$config")
}

# udev_rule MATCHES: the shipped rule, its USB id line replaced by one line for each site match
# (each positive and on one line: udev then requires the ids, and the serial, on one USB device).
udev_rule() {
    local rules="$root/udev-rules/60-itb-programmer.rules"
    if [ -z "$1" ]; then
        cat "$rules"
        return
    fi
    local vendor product serial
    grep -q '^SUBSYSTEMS=="usb", ATTRS{idVendor}==' "$rules" || { echo "install.sh: $rules has no USB id line to replace" >&2; exit 1; }
    awk '/^SUBSYSTEMS=="usb", ATTRS\{idVendor\}==/ { exit } { print }' "$rules"
    echo "# Made by scripts/install.sh from the match lines of $SYSCONFDIR/itb-bridge/itb-bridged.conf:"
    while IFS=: read -r vendor product serial; do
        vendor="$(printf '%04s' "$vendor" | tr ' A-F' '0a-f')"
        product="$(printf '%04s' "$product" | tr ' A-F' '0a-f')"
        local narrow=""
        [ -n "$serial" ] && narrow=", ATTRS{serial}==\"$serial\""
        printf 'SUBSYSTEMS=="usb", ATTRS{idVendor}=="%s", ATTRS{idProduct}=="%s"%s, GOTO="itb_programmer"\n' "$vendor" "$product" "$narrow"
    done <<<"$1"
    awk 'found { print } /^SUBSYSTEMS=="usb", ATTRS\{idVendor\}==/ { found = 1 }' "$rules"
}

# warn_generic_adapter: the default matches any FT232R, not only programmers: say so, loudly.
warn_generic_adapter() {
    cat >&2 <<WARN

  WARNING: the udev rule and the daemon match the generic FTDI FT232R adapter (0403:6001), the
  shipped default. Every FT232R in the clinic (a label printer, a scale, a lab instrument) will be
  claimed by itb-bridged, made unusable by others, and sent HOST_HEARTBEAT frames.
  Set your programmer adapter's ids, best with its serial number, in $config:
      match = 0403:6001:A1B2C3D4      (VVVV:PPPP:SERIAL; find them with lsusb or
                                       udevadm info --query=property --name=/dev/ttyUSB0)
  then run this install again: it makes the udev rule from those lines.

WARN
}

do_uninstall() {
    if systemd_running; then
        systemctl disable --now itb-forward.service 2>/dev/null || true
        systemctl disable --now itb-bridged.service 2>/dev/null || true
    fi
    rm -f "${files[@]}"
    # A config goes only when it is still the shipped default: local edits are kept.
    local name
    for name in itb-bridged itb-forward; do
        if [ -e "$confdir/$name.conf" ]; then
            if cmp -s "$confdir/$name.conf" "$root/systemd/$name.conf"; then
                rm -f "$confdir/$name.conf"
            else
                echo "kept $confdir/$name.conf: it has local changes"
            fi
        fi
    done
    rmdir "$docdir" "$confdir" 2>/dev/null || true
    if live; then
        systemd_running && systemctl daemon-reload
        if command -v udevadm >/dev/null && [ -S /run/udev/control ]; then udevadm control --reload; fi
        echo "uninstalled; the journal in /var/lib/itb-bridge and the users itb-bridge and itb-programmer are left in place"
    else
        echo "uninstalled from $DESTDIR"
    fi
}

case "$action" in
    install) do_install ;;
    uninstall) do_uninstall ;;
    *) echo "usage: scripts/install.sh [install|uninstall]  (env: PREFIX, DESTDIR, SYSCONFDIR, ITB_BIN_DIR)" >&2; exit 2 ;;
esac
