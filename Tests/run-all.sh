#!/usr/bin/env bash
# The whole test suite, from a clean clone on Debian 12 with the Swift toolchain:
#   1. installs what is missing (Debian packages, pydicom);
#   2. bounded libFuzzer runs of the DICOM reader, the rules parser and the DIMSE PDU and command
#      parsers (Tests/Fuzz/run-fuzzer.sh);
#   3. swift test: unit tests, end-to-end tests on the built binary, conformance with pydicom,
#      interop with DCMTK, dicom3tools and Orthanc — under an overall time limit
#      (CONSORT_TEST_TIMEOUT seconds, default 1500): a hang ends the run and names the tests
#      still running, rather than holding CI until it is killed;
#   4. a closing line counting passed, failed and skipped tests, each skip listed with its reason.
set -euo pipefail
cd "$(dirname "$0")/.."
Tests/install-test-dependencies.sh
Tests/Fuzz/run-fuzzer.sh --target dicom --seconds "${CONSORT_FUZZ_SECONDS:-60}"
Tests/Fuzz/run-fuzzer.sh --target rules --seconds "${CONSORT_FUZZ_SECONDS:-60}"
Tests/Fuzz/run-fuzzer.sh --target dimse --seconds "$(( ${CONSORT_FUZZ_SECONDS:-60} / 2 ))"
swift build --build-tests
log=$(mktemp "${TMPDIR:-/tmp}/consort-test-log.XXXXXX")
trap 'rm -f "$log"' EXIT
limit=${CONSORT_TEST_TIMEOUT:-1500}
status=0
# Swift Testing only: the suites use `import Testing` (an XCTest pass would report "0 tests").
timeout --signal=TERM --kill-after=30 "$limit" swift test --skip-build --disable-xctest "$@" 2>&1 | tee "$log" || status=${PIPESTATUS[0]}
Tests/summarise-test-log.py "$log" --timed-out "$([ "$status" -eq 124 ] || [ "$status" -eq 137 ] && echo "$limit" || echo 0)" || status=1
exit "$status"
