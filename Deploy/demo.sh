#!/usr/bin/env bash
# The README's first command: installs any missing Debian packages, builds Consort (release) and
# runs `consort demo`: a coordinator, the five trusts' agents and an AI service as processes on
# loopback, four stories played and checked, in about a minute. Arguments go to `consort demo`
# (--keep leaves it running to explore; Ctrl-C stops every process it started).
set -euo pipefail
cd "$(dirname "$0")/.."
Deploy/install-build-dependencies.sh
echo "Building Consort (release; the first build takes a few minutes)..." >&2
if ! built=$(swift build -c release --product consort 2>&1); then echo "$built" >&2; exit 1; fi
exec "$(swift build -c release --show-bin-path)/consort" demo --rules routing-rules "$@"
