#!/usr/bin/env bash
# Coverage-guided fuzzing with libFuzzer + AddressSanitizer, of the DICOM reader and value
# decoders (--target dicom, the default) or of the routing rules parser and checker (--target rules).
#
#   Tests/Fuzz/run-fuzzer.sh [--target dicom|rules] [--seconds N] [--corpus DIR]
#
# Builds the fuzz-dicom or fuzz-rules product into .build-fuzz, seeds a scratch corpus (the
# conformance fixtures; the consortium's rule files), and fuzzes for N seconds (default 60; for a
# long run, e.g. --seconds 3600 --corpus /var/tmp/consort-fuzz-dicom, which keeps what it learns
# between runs). Exits non-zero on a crash, leaving the input as crash-* in the corpus folder:
# reproduce with .build-fuzz/release/fuzz-dicom CRASH-FILE (or fuzz-rules).
#
# Why the extra -sanitize-coverage flags: with this toolchain, SwiftPM's --sanitize=fuzzer links
# libFuzzer but does not instrument Swift code for coverage, so libFuzzer fuzzes blind ("Is the
# code instrumented for coverage?"). inline-8bit-counters + pc-table is the instrumentation
# libFuzzer reads.
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=60
corpus=""
target=dicom
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds=$2; shift 2 ;;
    --corpus) corpus=$2; shift 2 ;;
    --target) target=$2; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "run-fuzzer: unknown argument $1" >&2; exit 2 ;;
  esac
done
case "$target" in dicom|rules) ;; *) echo "run-fuzzer: --target is dicom or rules" >&2; exit 2 ;; esac
product=fuzz-$target
swift build -c release --product "$product" --scratch-path .build-fuzz \
  --sanitize=fuzzer --sanitize=address \
  -Xswiftc -sanitize-coverage=edge,inline-8bit-counters,pc-table,trace-cmp >/dev/null
scratch=$(mktemp -d "${TMPDIR:-/tmp}/consort-fuzz.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
[ -n "$corpus" ] || corpus="$scratch/corpus"
mkdir -p "$corpus"
if [ "$target" = dicom ]; then
  python3 Tests/ConsortCLITests/Conformance/fixtures.py "$scratch/seeds" >/dev/null
else
  mkdir -p "$scratch/seeds" && cp routing-rules/*.rules "$scratch/seeds"/
fi
cp -n "$scratch/seeds"/* "$corpus"/
# SWIFT_BACKTRACE off: Swift's backtracer under ASan turns a clean finding into a spurious report.
# lsan.supp: leaks inside the toolchain's own libraries (each one explained there).
if SWIFT_BACKTRACE=enable=no LSAN_OPTIONS="suppressions=$PWD/Tests/Fuzz/lsan.supp:print_suppressions=0" \
     ".build-fuzz/release/$product" "$corpus" -max_total_time="$seconds" \
     -max_len=16384 -rss_limit_mb=2048 -timeout=10 -artifact_prefix="$corpus/" -print_final_stats=1 \
     > "$scratch/log" 2>&1; then
  echo "$product: no crash in ${seconds} s: $(grep -E '^stat::number_of_executed_units' "$scratch/log" | awk '{print $2}') inputs, coverage $(grep -oE 'cov: [0-9]+' "$scratch/log" | tail -1)"
else
  tail -40 "$scratch/log" >&2
  echo "$product: FAILED; inputs kept in $corpus" >&2
  trap - EXIT
  exit 1
fi
