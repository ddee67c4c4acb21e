#!/usr/bin/env bash
# Header-reading benchmark, in one run over the same warm files: consort's parser against pydicom
# (dcmread, stop_before_pixels), DCMTK (dcmdump +sb 7fe0,0010, many files per process) and the
# floor (a C loop: open, read the first 8 KiB, close). Prints files/s and the ratios.
#
#   Tests/Benchmarks/bench-parse.sh [--small N] [--realistic N] [--work DIR]
#
# Two corpora, made here once and kept in --work (default /tmp/consort-bench): N small files
# (64x64 pixels, default 20000) and N realistic ones (512x512 CT-sized, default 1500) -- on the
# second, a reader that touches pixel data shows at once. Single-threaded throughout.
set -euo pipefail
cd "$(dirname "$0")/../.."
small=20000
realistic=1500
work=${TMPDIR:-/tmp}/consort-bench
while [ $# -gt 0 ]; do
  case "$1" in
    --small) small=$2; shift 2 ;;
    --realistic) realistic=$2; shift 2 ;;
    --work) work=$2; shift 2 ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "bench-parse: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

Tests/install-test-dependencies.sh
swift build -c release --product consort >/dev/null
consort=$(swift build -c release --show-bin-path)/consort
mkdir -p "$work"

make_corpus() {  # name files pixels
  local dir="$work/$1-$2"
  if [ ! -f "$dir.complete" ]; then
    rm -rf "$dir"
    python3 Tests/Benchmarks/make_corpus.py "$dir" --files "$2" --pixels "$3" >/dev/null
    touch "$dir.complete"
  fi
  echo "$dir"
}

cc -O2 -o "$work/floor" -x c - <<'C'
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
/* The floor: open each listed file, read its first 8 KiB, close. Best of 3 passes after a warm one. */
int main(int argc, char **argv) {
    FILE *list = fopen(argv[1], "r"); if (!list) return 1;
    size_t cap = 1024, n = 0; char **paths = malloc(cap * sizeof *paths); char line[4096];
    while (fgets(line, sizeof line, list)) {
        line[strcspn(line, "\n")] = 0;
        if (n == cap) paths = realloc(paths, (cap *= 2) * sizeof *paths);
        paths[n++] = strdup(line);
    }
    static char buffer[8192]; double best = 1e30;
    for (int pass = 0; pass < 4; pass++) {
        struct timespec a, b; clock_gettime(CLOCK_MONOTONIC, &a);
        for (size_t i = 0; i < n; i++) {
            int fd = open(paths[i], O_RDONLY); if (fd < 0) return 1;
            if (read(fd, buffer, sizeof buffer) < 0) return 1;
            close(fd);
        }
        clock_gettime(CLOCK_MONOTONIC, &b);
        double s = (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9;
        if (pass > 0 && s < best) best = s;
    }
    printf("%.1f\n", n / best);
    return 0;
}
C

pydicom_rate() {  # list
  python3 - "$1" <<'PY'
import sys, time, warnings
import pydicom
warnings.simplefilter("ignore")
paths = [l.strip() for l in open(sys.argv[1]) if l.strip()]
for p in paths[:200]:
    pydicom.dcmread(p, stop_before_pixels=True)
start = time.perf_counter()
for p in paths:
    pydicom.dcmread(p, stop_before_pixels=True)
print(f"{len(paths) / (time.perf_counter() - start):.1f}")
PY
}

dcmtk_rate() {  # list
  local n start end
  n=$(wc -l < "$1")
  xargs -a "$1" -n 2000 dcmdump -q +sb 7fe0,0010 > /dev/null  # warm
  start=$(date +%s.%N)
  xargs -a "$1" -n 2000 dcmdump -q +sb 7fe0,0010 > /dev/null
  end=$(date +%s.%N)
  python3 -c "print(f'{$n / ($end - $start):.1f}')"
}

ratio() { python3 -c "print(f'{$1 / $2:.1f}')"; }

echo "Header-reading benchmark, single-threaded, warm page cache ($(nproc) cores, $(uname -r))"
printf '%-28s %10s %10s %10s %10s %10s %9s %9s %9s\n' corpus consort pydicom dcmtk floor MB/s "x pydicom" "x dcmtk" "floor/us"
checks=()
for spec in "small $small 64x64" "realistic $realistic 512x512"; do
  set -- $spec
  dir=$(make_corpus "$1" "$2" "$3")
  find "$dir" -name '*.dcm' -type f | sort > "$work/$1.list"
  json=$("$consort" bench parse "$dir" --repeat 3 --json)
  ours=$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['files_per_second'])" "$json")
  mbs=$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['mb_per_second'])" "$json")
  py=$(pydicom_rate "$work/$1.list")
  dt=$(dcmtk_rate "$work/$1.list")
  fl=$("$work/floor" "$work/$1.list")
  printf '%-28s %10.0f %10.0f %10.0f %10.0f %10.0f %9s %9s %9s\n' "$1 ($2 files, $3)" "$ours" "$py" "$dt" "$fl" "$mbs" \
    "$(ratio "$ours" "$py")" "$(ratio "$ours" "$dt")" "$(ratio "$fl" "$ours")"
  # The whole-file structural check the receiver and sender make (every element to the last
  # byte, pixel data skipped by seeking), against the header read just measured.
  vjson=$("$consort" bench parse "$dir" --repeat 3 --verify --json)
  verified=$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['files_per_second'])" "$vjson")
  checks+=("$(printf '%-28s %10.0f files/s whole-file check, %s of the header read (%.1f us a file more)' "$1 ($2 files, $3)" "$verified" \
    "$(python3 -c "print(f'{$verified / $ours:.2f}')")" "$(python3 -c "print(1e6 / $verified - 1e6 / $ours)")")")
done
echo "(files/s; targets: >= 30x pydicom, >= 15x DCMTK, floor/us <= 3)"
printf '%s\n' "${checks[@]}"
