#!/usr/bin/env bash
# Builds the Debian package itb-bridge_<version>_amd64.deb from this repository, with dpkg-deb
# from a staged install, and checks it with lintian.
#
#   scripts/build-deb.sh                       # -> dist/itb-bridge_<VERSION>_amd64.deb
#   DEB_VERSION=0.1.0+test1 scripts/build-deb.sh   # the same binaries under another version
#
# 1. builds itb-bridged, itbctl and itb-forward in release with the Swift runtime and Foundation linked
#    statically (--static-swift-stdlib), so they run on a Debian 12 without Swift, and checks
#    with ldd that no Swift library is needed;
# 2. checks that the version strings in the Swift sources are VERSION's, and that the man pages
#    in man/ describe every subcommand and option that `--help` lists;
# 3. stages the files where Debian puts them (scripts/install.sh with PREFIX=/usr, then the man
#    pages, the shell completions itbctl generates, the copyright and changelog);
# 4. writes DEBIAN/: control (Depends: computed by dpkg-shlibdeps from the binaries), conffiles,
#    md5sums and the maintainer scripts of packaging/debian/;
# 5. dpkg-deb --build, then lintian (errors and warnings fail the build; the overrides in
#    packaging/debian/lintian-overrides each say why).
#
# Environment:
#   DEB_VERSION   package version (default: the VERSION file)
#   DEB_OUT       output directory (default: dist/)
#   ITB_BIN_DIR   use these prebuilt itb-bridged, itbctl and itb-forward instead of building (they must be
#                 static-stdlib release builds; the ldd check still runs)
#   SCRATCH       the Swift build's scratch path (default .build-deb)
#   LINT=0        skip lintian (vm-test.sh's second package: the same files under another version)
# Deterministic: file times are the last commit's time (SOURCE_DATE_EPOCH) and the version comes
# from VERSION, so the same commit gives the same package contents.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
. scripts/lib.sh
ensure_packages "${PROJECT_PACKAGES[@]}" "${PACKAGING_PACKAGES[@]}"

die() { echo "build-deb.sh: $*" >&2; exit 1; }

upstream="$(tr -d ' \n' < VERSION)"
[[ "$upstream" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "VERSION must be MAJOR.MINOR.PATCH, not '$upstream'"
version="${DEB_VERSION:-$upstream}"
[[ "$version" =~ ^[0-9][A-Za-z0-9.+~-]*$ ]] || die "DEB_VERSION '$version' is not a Debian version"
# The version the programs report must be VERSION's (one place to change it; these follow).
for f in Sources/ITBBridge/API/Routes.swift Sources/itbctl/ITBCtl.swift; do
    grep -q "\"$upstream\"" "$f" || die "$f does not carry the version $upstream of the VERSION file: update it"
done
grep -q "\"version\": \"$upstream\"" Sources/ITBBridge/Resources/openapi.json \
    || die "Sources/ITBBridge/Resources/openapi.json's info.version is not $upstream (VERSION)"

export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}"
out="${DEB_OUT:-$root/dist}"
scratch="${SCRATCH:-$root/.build-deb}"
mkdir -p "$out"

# --- 1. the binaries ------------------------------------------------------------------------
# Release, the Swift runtime and Foundation static; linked with full RELRO and immediate binding
# (Debian's hardening flags: lintian's hardening-no-relro and hardening-no-bindnow).
swift_flags=(-c release --static-swift-stdlib --scratch-path "$scratch"
             -Xlinker -z -Xlinker relro -Xlinker -z -Xlinker now)
bin="${ITB_BIN_DIR:-}"
if [ -z "$bin" ]; then
    echo "== swift build -c release --static-swift-stdlib (scratch $scratch)"
    # One Swift build at a time on this machine (other worktrees build too).
    for product in itb-bridged itbctl itb-forward; do
        flock /tmp/itb-swift-build.lock nice -n 5 swift build "${swift_flags[@]}" --product "$product"
    done
    bin="$(swift build "${swift_flags[@]}" --show-bin-path)"
fi
for exe in itb-bridged itbctl itb-forward; do
    [ -x "$bin/$exe" ] || die "$bin/$exe is missing"
    if ldd "$bin/$exe" | grep -Ei 'libswift|libFoundation|libdispatch|libBlocksRuntime|lib_Foundation|/opt/swift|not found'; then
        die "$exe needs the Swift runtime or Foundation at run time (above): build with --static-swift-stdlib"
    fi
done

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
stage="$tmp/stage"

# --- 2. man pages against --help ------------------------------------------------------------
echo "== man pages against --help"
# Every --option that --help lists must appear in the man page (as \-\-option).
check_options() { # PAGE HELP-TEXT WHAT
    local page="$1" help="$2" what="$3" opt missing=()
    for opt in $(grep -oE -- '--[a-z][a-z0-9-]+' <<<"$help" | sort -u); do
        grep -qF -- "$(sed 's/-/\\-/g' <<<"$opt")" "$page" || missing+=("$opt")
    done
    [ ${#missing[@]} -eq 0 ] || die "man/$(basename "$page") lacks ${missing[*]} of $what --help: update the man page"
}
check_options man/itb-bridged.8 "$("$bin/itb-bridged" --help)" "itb-bridged"
check_options man/itb-forward.8 "$("$bin/itb-forward" --help)" "itb-forward"
subcommands="$("$bin/itbctl" --help | awk '/^SUBCOMMANDS:/{on=1; next} on && /^  [a-z]/{print $1}')"
[ -n "$subcommands" ] || die "cannot read the subcommands from itbctl --help"
for sub in $subcommands; do
    grep -qE "^\.(B|BR|BI) $sub( |$)" man/itbctl.1 || die "man/itbctl.1 does not describe the subcommand '$sub'"
    check_options man/itbctl.1 "$("$bin/itbctl" "$sub" --help)" "itbctl $sub"
done

# --- 3. the staged tree ---------------------------------------------------------------------
echo "== staging"
# The staged config is the shipped default (no `match` lines), so install.sh writes the shipped
# udev rule (0403:6001) and warns about the generic FT232R: the package ships that default, and
# postinst says how a site sets its own ids (README.md, "The Debian package").
DESTDIR="$stage" PREFIX=/usr ITB_BIN_DIR="$bin" bash scripts/install.sh >"$tmp/install.log" 2>&1 \
    || { cat "$tmp/install.log"; die "scripts/install.sh failed to stage (above)"; }
cmp -s udev-rules/60-itb-programmer.rules "$stage/usr/lib/udev/rules.d/60-itb-programmer.rules" \
    || die "the staged udev rule is not udev-rules/60-itb-programmer.rules"
# Debian 12's layout (lintian's systemd-service-file-outside-lib and udev checks): units and
# udev rules under /lib; sysusers.d under /usr/lib.
mkdir -p "$stage/lib/systemd" "$stage/lib/udev"
mv "$stage/usr/lib/systemd/system" "$stage/lib/systemd/system"
mv "$stage/usr/lib/udev/rules.d" "$stage/lib/udev/rules.d"
rmdir "$stage/usr/lib/systemd" "$stage/usr/lib/udev"
# dh_strip's flags: symbols and notes go; Swift's metadata sections stay (they are not symbols).
for exe in itb-bridged itbctl itb-forward; do
    strip --remove-section=.comment --remove-section=.note --strip-unneeded "$stage/usr/bin/$exe"
done
"$stage/usr/bin/itbctl" --version >/dev/null || die "the stripped itbctl does not run"
"$stage/usr/bin/itb-bridged" --help >/dev/null || die "the stripped itb-bridged does not run"
"$stage/usr/bin/itb-forward" --help >/dev/null || die "the stripped itb-forward does not run"

# The USB-serial drivers loaded at boot (the unit's DeviceAllow= needs their majors registered).
install -d -m 0755 "$stage/usr/lib/modules-load.d"
install -m 0644 systemd/itb-bridge.modules-load "$stage/usr/lib/modules-load.d/itb-bridge.conf"
doc="$stage/usr/share/doc/itb-bridge"
install -d -m 0755 "$stage/usr/share/man/man1" "$stage/usr/share/man/man8" \
    "$stage/usr/share/bash-completion/completions" "$stage/usr/share/zsh/vendor-completions" \
    "$stage/usr/share/fish/vendor_completions.d" "$stage/usr/share/lintian/overrides"
date_rfc="$(date -u -d "@$SOURCE_DATE_EPOCH" '+%a, %d %b %Y %H:%M:%S +0000')"
sed "s/@VERSION@/$version/" man/itb-bridged.8 | gzip -9n > "$stage/usr/share/man/man8/itb-bridged.8.gz"
sed "s/@VERSION@/$version/" man/itbctl.1 | gzip -9n > "$stage/usr/share/man/man1/itbctl.1.gz"
sed "s/@VERSION@/$version/" man/itb-forward.8 | gzip -9n > "$stage/usr/share/man/man8/itb-forward.8.gz"
# bash-completion sources the file: no #! line (lintian: bash-completion-with-hashbang).
"$stage/usr/bin/itbctl" --generate-completion-script bash | sed '1{/^#!/d}' > "$stage/usr/share/bash-completion/completions/itbctl"
"$stage/usr/bin/itbctl" --generate-completion-script zsh > "$stage/usr/share/zsh/vendor-completions/_itbctl"
"$stage/usr/bin/itbctl" --generate-completion-script fish > "$stage/usr/share/fish/vendor_completions.d/itbctl.fish"
for f in "$stage/usr/share/bash-completion/completions/itbctl" "$stage/usr/share/zsh/vendor-completions/_itbctl" \
         "$stage/usr/share/fish/vendor_completions.d/itbctl.fish"; do
    [ -s "$f" ] || die "itbctl --generate-completion-script wrote nothing for $f"
done
install -m 0644 packaging/debian/copyright "$doc/copyright"
sed -e "s/@VERSION@/$version/" -e "s/@DATE@/$date_rfc/" packaging/debian/changelog.in | gzip -9n > "$doc/changelog.gz"
gzip -9n "$doc/README.md"
install -m 0644 packaging/debian/lintian-overrides "$stage/usr/share/lintian/overrides/itb-bridge"

# --- 4. DEBIAN/ -----------------------------------------------------------------------------
echo "== DEBIAN/control (dpkg-shlibdeps)"
mkdir -p "$tmp/shlib/debian"
printf 'Source: itb-bridge\n\nPackage: itb-bridge\nArchitecture: amd64\n' > "$tmp/shlib/debian/control"
depends="$(cd "$tmp/shlib" && dpkg-shlibdeps -O "$stage/usr/bin/itb-bridged" "$stage/usr/bin/itbctl" "$stage/usr/bin/itb-forward" 2>&1 \
    | sed -n 's/^shlibs:Depends=//p')"
[ -n "$depends" ] || die "dpkg-shlibdeps computed no dependencies"
# systemd-sysusers (postinst) and udevadm come from these; deb-systemd-helper from init-system-helpers.
depends="$depends, systemd (>= 247), udev, init-system-helpers (>= 1.54)"
install -d -m 0755 "$stage/DEBIAN"
size="$(du -k -s --apparent-size "$stage" | cut -f1)"
sed -e "s/@VERSION@/$version/" -e "s/@DEPENDS@/$depends/" -e "s/@INSTALLED_SIZE@/$size/" \
    packaging/debian/control.in > "$stage/DEBIAN/control"
printf '/etc/itb-bridge/itb-bridged.conf\n/etc/itb-bridge/itb-forward.conf\n' > "$stage/DEBIAN/conffiles"
for s in postinst prerm postrm; do install -m 0755 "packaging/debian/$s" "$stage/DEBIAN/$s"; done
(cd "$stage" && find . -path ./DEBIAN -prune -o -type f -print | sed 's|^\./||' | LC_ALL=C sort \
    | xargs md5sum) > "$stage/DEBIAN/md5sums"
chmod 0644 "$stage/DEBIAN/control" "$stage/DEBIAN/conffiles" "$stage/DEBIAN/md5sums"
find "$stage" -type d -exec chmod 0755 {} +
find "$stage" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

# --- 5. build and lint ----------------------------------------------------------------------
deb="$out/itb-bridge_${version}_amd64.deb"
rm -f "$deb"
dpkg-deb --root-owner-group -Zgzip -z9 --build "$stage" "$deb" >/dev/null
if [ "${LINT:-1}" != 0 ]; then
    echo "== lintian $(basename "$deb")"
    lintian --fail-on error,warning --display-info "$deb" || die "lintian finds errors or warnings (above)"
fi
echo "built $deb ($(du -h "$deb" | cut -f1); Depends: $depends)"
