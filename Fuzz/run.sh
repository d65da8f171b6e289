#!/usr/bin/env bash
# Fuzz the protocol decoder with libFuzzer for a bounded time.
#
#   Fuzz/run.sh [SECONDS]        (default 60)
#
# Builds Fuzz/DecoderFuzzer.swift together with the ITBProtocol and ITBJSON sources into one
# binary with -sanitize=fuzzer,address (no package build needed), seeds the corpus from every
# frame, negative and stream vector in protocol-spec/vectors.json, and runs libFuzzer. Exits
# non-zero on any crash, sanitizer report or invariant violation; the crashing input is left in
# Fuzz/artifacts/.
set -euo pipefail
seconds="${1:-60}"
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$root/Fuzz"
bin="$work/bin"
src="$bin/src"
rm -rf "$src"
mkdir -p "$bin" "$src" "$work/corpus" "$work/artifacts"

# One module: the library sources with their cross-module imports removed.
cp "$root"/Sources/ITBProtocol/*.swift "$root"/Sources/ITBJSON/*.swift "$work/DecoderFuzzer.swift" "$src/"
sed -i -E '/^(public )?import ITBProtocol$/d' "$src"/*.swift
cat > "$bin/module.modulemap" <<MAP
module CCRC32C {
    header "$root/Sources/CCRC32C/include/ccrc32c.h"
    export *
}
MAP

clang="$(dirname "$(command -v swiftc)")/clang"
"$clang" -O2 -g -fsanitize=fuzzer-no-link,address -I "$root/Sources/CCRC32C/include" \
    -c "$root/Sources/CCRC32C/crc32c.c" -o "$bin/crc32c.o"
swiftc -O -g -swift-version 6 -parse-as-library -sanitize=fuzzer,address \
    -module-name ITBFuzz -I "$bin" "$src"/*.swift "$bin/crc32c.o" -o "$bin/decoder-fuzzer"

# Seed corpus from the golden vectors (idempotent: files are named by content).
python3 - "$root/protocol-spec/vectors.json" "$work/corpus" <<'PY'
import hashlib, json, os, sys
vectors = json.load(open(sys.argv[1]))
for group in ("frames", "negative", "streams"):
    for v in vectors[group]:
        data = bytes.fromhex(v["hex"])
        name = hashlib.sha1(data).hexdigest()
        with open(os.path.join(sys.argv[2], name), "wb") as f:
            f.write(data)
PY

echo "fuzzing the decoder for ${seconds}s (corpus: $(ls "$work/corpus" | wc -l) inputs)"
"$bin/decoder-fuzzer" "$work/corpus" -max_total_time="$seconds" -max_len=4400 \
    -artifact_prefix="$work/artifacts/" -print_final_stats=1 -timeout=10 -rss_limit_mb=4096
