#!/usr/bin/env bash
# consort bench query from a release build: the consortium as one DICOM node — C-FIND latency at
# an agent's query/retrieve SCP for a patient with 10 studies across five trusts (registry of
# --studies N; the issue's figure is at 1000000), and a C-MOVE of a study held at another trust
# against a push of the same study (DCMTK's storescp as the move's destination).
#   Tests/Benchmarks/bench-query.sh [--studies N] [--queries Q] [--instances I] [--work DIR] [--json]
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! built=$(swift build -c release --product consort 2>&1); then echo "$built" >&2; exit 1; fi
consort=$(swift build -c release --show-bin-path)/consort
exec "$consort" bench query "$@"
