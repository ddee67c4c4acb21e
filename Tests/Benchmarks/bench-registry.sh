#!/usr/bin/env bash
# The coordinator's registry, SQLite and PostgreSQL side by side: `consort bench registry` on
# each (a real coordinator process loaded through its API by 8 clients, then 8 clients asking
# where patients' imaging is), one JSON line each, then the two compared. With several sizes, a
# scale curve: each size a fresh registry of each kind, and how announce rate and locate p99 move
# from the first size to the last.
# Targets (coordinator issues, at 10 million studies, on both stores): locate p99 < 5 ms,
# announce >= 20,000 studies/s, coordinator RSS < 300 MB; PostgreSQL's locate p99 at the largest
# size no more than 1.5x its value at the first.
#
#   Tests/Benchmarks/bench-registry.sh [--studies N[,N...]] [--lookups L] [--only sqlite|postgresql]
set -euo pipefail
cd "$(dirname "$0")/../.."
sizes=1000000
lookups=40000
only=""
while [ $# -gt 0 ]; do
  case "$1" in
    --studies) sizes=$2; shift 2 ;;
    --lookups) lookups=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "bench-registry: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ $sizes =~ ^[0-9]+(,[0-9]+)*$ ]] || { echo "bench-registry: --studies takes sizes such as 1000000,3000000" >&2; exit 2; }
case "$only" in ""|sqlite|postgresql) ;; *) echo "bench-registry: --only sqlite or postgresql" >&2; exit 2 ;; esac
if ! built=$(swift build -c release --product consort 2>&1); then echo "$built" >&2; exit 1; fi
consort=$(swift build -c release --show-bin-path)/consort
work=$(mktemp -d "${TMPDIR:-/tmp}/consort-bench-registry.XXXXXX")
chmod 0711 "$work"  # the throwaway PostgreSQL runs as another user and must reach its folder
trap 'Tests/Support/throwaway-postgres.sh stop "$work/pg" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
results=()
for studies in ${sizes//,/ }; do
  if [ "$only" != postgresql ]; then
    line=$("$consort" bench registry --studies "$studies" --lookups "$lookups" --work "$work/sqlite" --json)
    echo "$line"
    results+=("$line")
    rm -rf "$work/sqlite"
  fi
  if [ "$only" != sqlite ]; then
    # shared_buffers as a server holding millions of rows would have (the test servers keep 16 MB).
    if conninfo=$(CONSORT_PG_SHARED_BUFFERS=${CONSORT_PG_SHARED_BUFFERS:-1GB} Tests/Support/throwaway-postgres.sh start "$work/pg"); then
      line=$("$consort" bench registry --studies "$studies" --lookups "$lookups" --postgresql "$conninfo" --work "$work/pgwork" --json)
      echo "$line"
      results+=("$line")
      Tests/Support/throwaway-postgres.sh stop "$work/pg" >/dev/null
      rm -rf "$work/pgwork"
    else
      echo "PostgreSQL not available: SQLite only" >&2
      only=sqlite
    fi
  fi
done
python3 - "${results[@]}" <<'PY'
import json, sys
rows = [json.loads(a) for a in sys.argv[1:] if a]
print(f"{'registry':<11}{'studies':>11}{'announce/s':>12}{'locate p50':>12}{'p99':>9}{'RSS MB':>8}")
for r in rows:
    print(f"{r['registry']:<11}{r['studies']:>11}{r['announce_per_s']:>12.0f}{r['locate_p50_ms']:>10.2f}ms{r['locate_p99_ms']:>7.2f}ms{r['rss_mb']:>8.0f}")
for kind in ("sqlite", "postgresql"):
    curve = [r for r in rows if r["registry"] == kind]
    if len(curve) > 1:
        a, b = curve[0], curve[-1]
        print(f"{kind}: from {a['studies']:,} to {b['studies']:,} studies, announce x{b['announce_per_s'] / a['announce_per_s']:.2f}, "
              f"locate p99 x{b['locate_p99_ms'] / a['locate_p99_ms']:.2f}")
PY
