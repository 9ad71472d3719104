#!/usr/bin/env bash
# CI-length fuzzing: build every target once, then run each for FUZZ_SECONDS (default 30)
# from the committed seeds (fuzz/seeds/<target>) plus its working corpus. Any crash fails
# the script; the reproducer is left in fuzz/artifacts/<target>/. Prints one line per
# target with the executions run, for docs/hardening.md.
#
# Only the stable toolchain exists: RUSTC_BOOTSTRAP=1 lets it take cargo-fuzz's nightly
# flags (-Zsanitizer=address and friends). cargo-fuzz is installed if missing (~1 min).
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET="${FUZZ_SECONDS:-30}"
export RUSTC_BOOTSTRAP=1
export CARGO_TERM_COLOR=never

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    timeout 900 cargo install cargo-fuzz --locked
fi

targets=$(cd fuzz && cargo fuzz list)
echo "== building fuzz targets"
(cd fuzz && timeout 1200 cargo fuzz build -O)

status=0
for t in $targets; do
    mkdir -p "fuzz/corpus/$t" "fuzz/seeds/$t"
    log="fuzz/artifacts/$t.log"
    mkdir -p fuzz/artifacts
    # -rss_limit_mb: a decoder that allocates what a peer claims shows up as a failure.
    if (cd fuzz && timeout $((SECONDS_PER_TARGET + 120)) cargo fuzz run -O "$t" \
            "corpus/$t" "seeds/$t" -- \
            -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=2048 -max_len=65536 \
            -print_final_stats=1) >"$log" 2>&1; then
        execs=$(grep -m1 'stat::number_of_executed_units' "$log" | awk '{print $2}')
        echo "fuzz $t: ok, ${execs:-?} executions in ${SECONDS_PER_TARGET}s"
    else
        status=1
        echo "fuzz $t: FAILED (see $log)"
        tail -40 "$log"
    fi
done
exit $status
