#!/usr/bin/env bash
# consort bench dimse from a release build: DIMSE C-STORE on loopback beside DCMTK on the same
# files (storescu → storescp and → the agent's SCP; consort store → storescp on one and on
# several associations), the ratios and the peak memory. Arguments go to the benchmark
# (default: 1000 instances of 512x512, ~0.5 MB each).
#   Tests/Benchmarks/bench-dimse.sh [--instances N] [--associations A] [--work DIR] [--json]
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! built=$(swift build -c release --product consort 2>&1); then echo "$built" >&2; exit 1; fi
consort=$(swift build -c release --show-bin-path)/consort
exec "$consort" bench dimse "$@"
