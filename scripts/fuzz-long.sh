#!/usr/bin/env bash
# Long local fuzzing: every target for FUZZ_SECONDS (default 3600) each, one after the
# other, on FUZZ_JOBS workers (default 1). Same set-up as fuzz-ci.sh; the corpus grows in
# fuzz/corpus/ and is reused by later runs (CI included, when committed by hand).
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZ_SECONDS="${FUZZ_SECONDS:-3600}" FUZZ_JOBS="${FUZZ_JOBS:-1}"
export FUZZ_SECONDS
if [ "$FUZZ_JOBS" = "1" ]; then
    exec scripts/fuzz-ci.sh
fi
export RUSTC_BOOTSTRAP=1
cargo fuzz --version >/dev/null 2>&1 || cargo install cargo-fuzz --locked
(cd fuzz && cargo fuzz build -O)
for t in $(cd fuzz && cargo fuzz list); do
    mkdir -p "fuzz/corpus/$t" "fuzz/seeds/$t"
    (cd fuzz && cargo fuzz run -O "$t" "corpus/$t" "seeds/$t" -- \
        -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=2048 -max_len=65536 \
        -jobs="$FUZZ_JOBS" -workers="$FUZZ_JOBS" -print_final_stats=1)
done
