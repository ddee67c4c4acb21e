#!/usr/bin/env bash
# The whole test suite, from a clean clone on Debian 12 with the Swift toolchain:
#   1. installs what is missing (Debian packages, pydicom);
#   2. bounded libFuzzer runs of the DICOM reader and of the rules parser (Tests/Fuzz/run-fuzzer.sh);
#   3. swift test: unit tests, end-to-end tests on the built binary, conformance with pydicom,
#      interop with DCMTK and dicom3tools.
# swift test runs last so that its summary closes the log.
set -euo pipefail
cd "$(dirname "$0")/.."
Tests/install-test-dependencies.sh
Tests/Fuzz/run-fuzzer.sh --target dicom --seconds "${CONSORT_FUZZ_SECONDS:-60}"
Tests/Fuzz/run-fuzzer.sh --target rules --seconds "${CONSORT_FUZZ_SECONDS:-60}"
swift build --build-tests
# Swift Testing only: the suites use `import Testing` (an XCTest pass would report "0 tests").
swift test --skip-build --disable-xctest
