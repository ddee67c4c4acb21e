#!/usr/bin/env bash
# Push benchmark, all over mutual TLS on loopback, in one run:
#   1. `consort bench push`: consort send → consort receive (which fsyncs every instance before
#      acknowledging it), an untimed round then three interleaved with 2's, the median of each reported
#   2. curl → tls_sink: the same multipart bytes, same TLS settings, to a C sink that discards them;
#      streamed from the disk as `consort send` streams (curl -T), and again preloaded into memory
#      before curl's clock starts (--data-binary @file: reading 315 MB takes curl another 0.2 s,
#      outside its time_total), for reference
#   3. curl (STOW-RS) → Orthanc 1.10 + DICOMweb plugin
#   4. consort send → the same Orthanc
# for a study of N CT-sized instances (512×512, default 600 ≈ 315 MB) and again for 3N, printing
# MB/s, the ratios the transport issue targets, and the peak RSS of sender and receiver.
#
#   Tests/Benchmarks/bench-push.sh [--instances N] [--work DIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
instances=600
work=${TMPDIR:-/tmp}/consort-bench-push
while [ $# -gt 0 ]; do
  case "$1" in
    --instances) instances=$2; shift 2 ;;
    --work) work=$2; shift 2 ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "bench-push: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

# Where the receivers store: a fresh folder per run, all removed at the end. On ext4 the folder is
# flagged as the top of a hierarchy (chattr +T), so that each store inside it is placed in a
# fresh block group. Why: ext4 without a journal (as on the benchmark machine) will not reuse an
# inode freed in the last 60 to 300 s (recently_deleted() in fs/ext4/ialloc.c) and reads past
# every such inode when creating a file in that group; that charged whichever receiver ran next
# for the previous run's clean-up (a 945 MB run dropped from ~800 to 598 MB/s, and perf showed
# recently_deleted() at 11% of the receiver). Orthanc's stores are placed the same way.
stores="$work/stores"
mkdir -p "$work"
rm -rf "$stores"
mkdir -p "$stores"
chattr +T "$stores" 2>/dev/null || true
trap 'rm -rf "$stores"' EXIT

Tests/install-test-dependencies.sh
swift build -c release --product consort >/dev/null
consort=$(swift build -c release --show-bin-path)/consort
mkdir -p "$work"
cc -O2 -o "$work/tls_sink" Tests/Benchmarks/tls_sink.c -lssl -lcrypto
cc -shared -fPIC -o "$work/orthanc_preload.so" Tests/ConsortCLITests/Interop/orthanc_preload.c -ldl

# A throwaway consortium CA: UHSX serves, RSCH sends.
pki="$work/pki"
if [ ! -f "$pki/ca.pem" ]; then
  mkdir -p "$pki"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$pki/ca.key" -out "$pki/ca.pem" -days 2 \
    -subj "/CN=Bench CA" -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
  for site in UHSX RSCH; do
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$pki/$site.key" -out "$pki/$site.csr" -subj "/CN=$site" 2>/dev/null
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n' > "$pki/$site.ext"
    openssl x509 -req -in "$pki/$site.csr" -CA "$pki/ca.pem" -CAkey "$pki/ca.key" -CAcreateserial -out "$pki/$site.pem" -days 1 -extfile "$pki/$site.ext" 2>/dev/null
  done
  cat "$pki/UHSX.pem" "$pki/UHSX.key" > "$pki/UHSX-combined.pem"
fi
client_tls=(--cert "$pki/RSCH.pem" --key "$pki/RSCH.key" --ca "$pki/ca.pem")
curl_tls=(--cacert "$pki/ca.pem" --cert "$pki/RSCH.pem" --key "$pki/RSCH.key")

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
mbps() { python3 -c "print(f'{$1 / 1e6 / $2:.0f}')"; }
ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }
peak_kb() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }
json_field() { python3 -c "import json, sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR + 1) / 2)]}'; }
mbps_list() { local bytes=$1; shift; local out=() t; for t in "$@"; do out+=("$(mbps "$bytes" "$t")"); done; echo "${out[*]}"; }
rounds_log=()

# One study, and its STOW-RS body for curl.
make_study() {  # N → folder
  local dir="$work/study-$1"
  if [ ! -f "$dir.complete" ]; then
    rm -rf "$dir"
    "$consort" demo study --out "$dir" --instances "$1" --size 512x512 >/dev/null
    python3 - "$dir" "$dir.body" <<'PY'
import os, sys
root, out = sys.argv[1], sys.argv[2]
files = sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs if f.endswith(".dcm"))
with open(out, "wb") as body:
    for path in files:
        data = open(path, "rb").read()
        body.write(b"--consortbench\r\nContent-Type: application/dicom\r\n\r\n" + data + b"\r\n")
    body.write(b"--consortbench--\r\n")
PY
    touch "$dir.complete"
  fi
  echo "$dir"
}

run_one() {  # N
  local n=$1 study bytes
  study=$(make_study "$n")
  bytes=$(du -sb --apparent-size "$study" | cut -f1)
  local ct='multipart/related; type="application/dicom"; boundary=consortbench'
  # Both senders read their input from the page cache: warm it (the files and the body).
  find "$study" -type f -exec cat {} + > /dev/null
  cat "$study.body" > /dev/null

  # 1 and 2, an untimed round and then three, each of: consort send → consort receive (a fresh
  # store; fsync per instance), then curl → sink (discards; same TLS) streamed and preloaded. Each
  # figure is the median of its three: single runs here move by up to 20% (the first of a run
  # was most often the slow one, hence the untimed round), and the rounds interleave so that
  # drift hits all alike.
  local rounds=3 round ours_all=() sink_all=() mem_all=() sendkb=0 receivekb=0 stored=0
  for round in $(seq 0 "$rounds"); do
    local result
    result=$("$consort" bench push --json --study "$study" --work "$work/bench-push-work" --store "$stores")
    ours_all+=("$(json_field "$result" seconds)")
    sendkb=$(( $(json_field "$result" sender_peak_rss_kib) > sendkb ? $(json_field "$result" sender_peak_rss_kib) : sendkb ))
    receivekb=$(( $(json_field "$result" receiver_peak_rss_kib) > receivekb ? $(json_field "$result" receiver_peak_rss_kib) : receivekb ))
    stored=$(json_field "$result" instances)

    local port
    port=$(free_port)
    "$work/tls_sink" "$port" "$pki/UHSX.pem" "$pki/UHSX.key" "$pki/ca.pem" > "$work/sink.out" &
    local sink=$!
    sleep 0.3
    sink_all+=("$(curl -s -o /dev/null -w "%{time_total}" -X POST -T "$study.body" -H "Content-Type: $ct" -H "Expect:" "${curl_tls[@]}" "https://127.0.0.1:$port/studies")")
    mem_all+=("$(curl -s -o /dev/null -w "%{time_total}" -H "Content-Type: $ct" -H "Expect:" --data-binary "@$study.body" "${curl_tls[@]}" "https://127.0.0.1:$port/studies")")
    kill "$sink"; wait "$sink" 2>/dev/null || true
    if [ "$round" = 0 ]; then ours_all=(); sink_all=(); mem_all=(); fi  # the untimed round
  done
  local ours sinktime memtime
  ours=$(median "${ours_all[@]}"); sinktime=$(median "${sink_all[@]}"); memtime=$(median "${mem_all[@]}")
  rounds_log+=("$n instances: send→rcv $(mbps_list "$bytes" "${ours_all[@]}"); curl→sink $(mbps_list "$bytes" "${sink_all[@]}"); (in mem) $(mbps_list "$bytes" "${mem_all[@]}")")

  # 3 and 4. Orthanc over mutual TLS: curl's STOW, then consort send, each into a fresh database.
  local orthanc_port orthanc_curl orthanc_ours
  export -f free_port
  orthanc_run() {  # label command...: starts a fresh Orthanc, runs the command, prints seconds
    local dir; dir="$stores/orthanc-$n-$1"; mkdir -p "$dir/db"
    orthanc_port=$(free_port)
    cat > "$dir/o.json" <<JSON
{"Name":"bench","StorageDirectory":"$dir/db","IndexDirectory":"$dir/db","HttpPort":$orthanc_port,"DicomServerEnabled":false,
 "RemoteAccessAllowed":false,"AuthenticationEnabled":false,"SslEnabled":true,"SslCertificate":"$pki/UHSX-combined.pem",
 "SslVerifyPeers":true,"SslTrustedClientCertificates":"$pki/ca.pem","Plugins":["/usr/share/orthanc/plugins/libOrthancDicomWeb.so"],
 "DicomWeb":{"Enable":true,"Root":"/dicom-web/"}}
JSON
    LD_PRELOAD="$work/orthanc_preload.so" /usr/sbin/Orthanc "$dir/o.json" >"$dir/log" 2>&1 &
    local pid=$!
    for _ in $(seq 300); do
      [ "$(curl -s -o /dev/null -w '%{http_code}' "${curl_tls[@]}" "https://127.0.0.1:$orthanc_port/system")" = 200 ] && break
      sleep 0.1
    done
    local a b; a=$(date +%s.%N)
    shift
    ORTHANC_PORT=$orthanc_port "$@" >/dev/null
    b=$(date +%s.%N)
    kill -9 "$pid"; wait "$pid" 2>/dev/null || true
    python3 -c "print($b - $a)"
  }
  # The port is known only inside orthanc_run; the commands read it from ORTHANC_PORT.
  orthanc_curl=$(orthanc_run curl bash -c 'curl -s -o /dev/null -H "Content-Type: '"$ct"'" -H "Expect:" --data-binary @'"$study.body"' --cacert '"$pki"'/ca.pem --cert '"$pki"'/RSCH.pem --key '"$pki"'/RSCH.key "https://127.0.0.1:$ORTHANC_PORT/dicom-web/studies"')
  orthanc_ours=$(orthanc_run ours bash -c '"'"$consort"'" send "https://127.0.0.1:$ORTHANC_PORT/dicom-web" "'"$study"'" --cert "'"$pki"'/RSCH.pem" --key "'"$pki"'/RSCH.key" --ca "'"$pki"'/ca.pem"')

  local a b m c d
  a=$(mbps "$bytes" "$ours"); b=$(mbps "$bytes" "$sinktime"); m=$(mbps "$bytes" "$memtime"); c=$(mbps "$bytes" "$orthanc_curl"); d=$(mbps "$bytes" "$orthanc_ours")
  printf '%-22s %8s %8s %8s %8s %8s   %6s %6s %6s %6s   %6s %6s  %s\n' "$n × 512×512 ($((bytes / 1000000)) MB)" "$a" "$b" "$m" "$c" "$d" \
    "$(ratio "$a" "$b")" "$(ratio "$a" "$m")" "$(ratio "$a" "$c")" "$(ratio "$d" "$c")" "$((sendkb / 1024))" "$((receivekb / 1024))" "$stored stored"
}

echo "Push benchmark over mutual TLS on loopback ($(nproc) cores); MB/s of DICOM files"
printf '%-22s %8s %8s %8s %8s %8s   %6s %6s %6s %6s   %6s %6s\n' study "send→rcv" "curl→sink" "(in mem)" "curl→Orth" "send→Orth" "÷sink" "÷mem" "÷Orth" "Orth÷" "sndMB" "rcvMB"
run_one "$instances"
run_one $((instances * 3))
echo "send→rcv and curl→sink: the median of three rounds after an untimed one; each round's MB/s:"
printf '  %s\n' "${rounds_log[@]}"
echo "curl→sink streams the body from disk as consort send does; (in mem): the body preloaded before curl's clock starts."
echo "Targets: send→receive ≥ 0.5× curl→sink and ≥ 3× Orthanc's ingest (curl→Orthanc); send→Orthanc ≥ 0.9× curl→Orthanc;"
echo "peak RSS of sender and receiver under 64 MB, the same for the 3× study."
