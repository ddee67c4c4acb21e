#!/usr/bin/env bash
# The coordinator's registry, SQLite and PostgreSQL side by side: `consort bench registry` on
# each (a real coordinator process loaded through its API by 8 clients, then 8 clients asking
# where patients' imaging is), one JSON line each, then the two compared.
# Targets (coordinator issue, at 10 million studies on SQLite): locate p99 < 5 ms, announce
# >= 20,000 studies/s, coordinator RSS < 300 MB.
#
#   Tests/Benchmarks/bench-registry.sh [--studies N] [--lookups L]
set -euo pipefail
cd "$(dirname "$0")/../.."
studies=1000000
lookups=40000
while [ $# -gt 0 ]; do
  case "$1" in
    --studies) studies=$2; shift 2 ;;
    --lookups) lookups=$2; shift 2 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "bench-registry: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
if ! built=$(swift build -c release --product consort 2>&1); then echo "$built" >&2; exit 1; fi
consort=$(swift build -c release --show-bin-path)/consort
work=$(mktemp -d "${TMPDIR:-/tmp}/consort-bench-registry.XXXXXX")
chmod 0711 "$work"  # the throwaway PostgreSQL runs as another user and must reach its folder
trap 'Tests/Support/throwaway-postgres.sh stop "$work/pg" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
sqlite=$("$consort" bench registry --studies "$studies" --lookups "$lookups" --json)
echo "$sqlite"
postgres=""
# shared_buffers as a server holding millions of rows would have (the test servers keep 16 MB).
if conninfo=$(CONSORT_PG_SHARED_BUFFERS=${CONSORT_PG_SHARED_BUFFERS:-1GB} Tests/Support/throwaway-postgres.sh start "$work/pg"); then
  postgres=$("$consort" bench registry --studies "$studies" --lookups "$lookups" --postgresql "$conninfo" --json)
  echo "$postgres"
else
  echo "PostgreSQL not available: SQLite only" >&2
fi
python3 - "$sqlite" "$postgres" <<'PY'
import json, sys
rows = [json.loads(a) for a in sys.argv[1:] if a]
print(f"{'registry':<11}{'studies':>10}{'announce/s':>12}{'locate p50':>12}{'p99':>9}{'RSS MB':>8}")
for r in rows:
    print(f"{r['registry']:<11}{r['studies']:>10}{r['announce_per_s']:>12.0f}{r['locate_p50_ms']:>10.2f}ms{r['locate_p99_ms']:>7.2f}ms{r['rss_mb']:>8.0f}")
PY
