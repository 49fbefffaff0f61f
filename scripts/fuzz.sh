#!/usr/bin/env bash
# Fuzzes the network-facing decode path (routing + payload decoding) with libFuzzer.
#   scripts/fuzz.sh [SECONDS]      default 300
# Needs cargo-fuzz (`cargo install cargo-fuzz`). cargo-fuzz needs nightly compiler
# flags; RUSTC_BOOTSTRAP=1 lets the stable toolchain accept them. The seeds are the
# captured TonyPi simulator traffic, one "topic NUL payload" file per fixture line
# (written to fuzz/seeds/decode by python3); new inputs go to fuzz/corpus/decode,
# crashes to fuzz/artifacts/decode.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs="${1:-300}"
command -v cargo-fuzz >/dev/null || { echo "cargo-fuzz missing: cargo install cargo-fuzz" >&2; exit 1; }
command -v python3 >/dev/null || { echo "python3 missing (it writes the seeds): apt-get install python3" >&2; exit 1; }
mkdir -p corpus/decode seeds/decode
python3 - <<'PY'
import json
with open("../tests/fixtures/tonypi-simulator-samples.jsonl") as f:
    for i, line in enumerate(f):
        v = json.loads(line)
        with open(f"seeds/decode/fixture-{i:03}", "wb") as out:
            out.write(v["topic"].encode() + b"\0" + v["payload"].encode())
PY
RUSTC_BOOTSTRAP=1 exec cargo fuzz run decode --fuzz-dir . corpus/decode seeds/decode -- \
    -max_total_time="$secs" -max_len=1100000 -timeout=10 -rss_limit_mb=2048
