#!/usr/bin/env bash
# The main job. Until the daemon lands (its own issue), this builds the tools and says plainly
# what exists: the protocol library and its tests. It will start the daemon attached to a
# simulated programmer, with its socket and state under .demo/, once those are built.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
. scripts/lib.sh
ensure_packages "${PROJECT_PACKAGES[@]}"
swift build --product itb-bridged
exec "$(swift build --show-bin-path)/itb-bridged" "$@"
