#!/usr/bin/env bash
# The README's demo: installs any missing Debian packages, builds Consort (release), and runs
# `consort demo` (a synthetic study written and read back). Arguments go to `consort demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
Deploy/install-build-dependencies.sh
echo "Building Consort (release; the first build takes a minute or two)..." >&2
swift build -c release --product consort >/dev/null
exec "$(swift build -c release --show-bin-path)/consort" demo "$@"
