#!/usr/bin/env bash
# Short fuzzing smoke on stable: every target runs FUZZ_SECONDS (default 30) from its
# committed seeds (fuzz/seeds/<target>) without a sanitizer. Fails on any crash, leak or
# timeout that libFuzzer reports. Prints exec/s per target. See fuzz/README.md for the long run.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${FUZZ_SECONDS:-30}"
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
cargo fuzz build -s none
for target in $(cargo fuzz list); do
  corpus="target/smoke-corpus/$target"
  mkdir -p "$corpus"
  log="target/smoke-$target.log"
  if ! cargo fuzz run "$target" -s none "$corpus" "seeds/$target" -- \
      -max_total_time="$seconds" -max_len=16384 -timeout=10 -rss_limit_mb=2048 >"$log" 2>&1; then
    echo "fuzz smoke: $target FAILED"
    tail -40 "$log"
    exit 1
  fi
  stats=$(grep -E '^#[0-9]+.*DONE' "$log" | tail -1 || true)
  echo "fuzz smoke: $target ok ($stats)"
done
