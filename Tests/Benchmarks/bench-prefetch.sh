#!/usr/bin/env bash
# Prefetch benchmark, the coordinator issue's target: an oncology CT arriving at ASPH with three
# ~50 MB CT priors of the same patient at UHSX (two) and RSCH (one): all three in ASPH's inbound
# within 10 s of the trigger, on loopback.
#
# A throwaway CA and certificates (consort pki), a rules folder (members RSCH, UHSX, ASPH, one
# agreement, and the "Oncology priors" rule of the coordinator tests), the coordinator and three
# agents on free loopback ports (ASPH with RSCH and UHSX as peers), the priors synthesised into
# the holders' watch folders (consort synth). Once `consort locate` shows the three priors
# known to the coordinator, the trigger (a small "ONC" CT, synthesised aside) is moved whole
# into ASPH's watch folder and the clock starts; ASPH's inbound is polled every 50 ms until
# every instance of the three priors is there as <StudyUID>/<SOP>.dcm. Prints the time from the
# move to the last prior instance in place, and MB/s. It reports, it does not judge: exit 0 when
# all three arrived (however slowly), 1 when they did not within 120 s (the logs' tails shown),
# 2 for a usage error.
#
#   Tests/Benchmarks/bench-prefetch.sh [--consort PATH] [--work DIR] [--size-mb MB | --instances N]
#
#   --consort PATH  the consort binary (default: built here, swift build -c release)
#   --work DIR      where everything goes; kept afterwards (its own subfolders replaced on the
#                   next run). Default: a temporary folder, removed at the end.
#   --instances N   instances of 512×512 CT in each prior (default 100: 52 MB)
#   --size-mb MB    or the size of each prior instead (50: 96 instances)
set -euo pipefail
cd "$(dirname "$0")/../.."
consort=""
work=""
size_mb=""
instances=100
deadline_s=120
nhs=9990000018  # the 999 range is never issued to a patient
while [ $# -gt 0 ]; do
  case "$1" in
    --consort) consort=$2; shift 2 ;;
    --work) work=$2; shift 2 ;;
    --size-mb) size_mb=$2; shift 2 ;;
    --instances) instances=$2; size_mb=""; shift 2 ;;
    -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
    *) echo "bench-prefetch: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [ -n "$size_mb" ]; then
  # A 512×512 16-bit CT instance is 524,288 bytes of pixels plus ~1.5 kB of header.
  instances=$(python3 -c "import math; print(max(1, math.ceil($size_mb * 1e6 / 525800)))")
fi

if [ -z "$consort" ]; then
  if ! built=$(swift build -c release --product consort 2>&1); then echo "$built" >&2; exit 1; fi
  consort=$(swift build -c release --show-bin-path)/consort
fi
consort=$(realpath "$consort")
[ -x "$consort" ] || { echo "bench-prefetch: $consort is not an executable" >&2; exit 2; }

keep_work=1
if [ -z "$work" ]; then
  work=$(mktemp -d "${TMPDIR:-/tmp}/consort-bench-prefetch.XXXXXX")
  keep_work=0
else
  mkdir -p "$work"
  work=$(realpath "$work")
  rm -rf "${work:?}"/{pki,rules,coordinator,rsch,uhsx,asph,staging}
fi

# Every process started here, stopped on any exit: SIGTERM to all, then each waited for, and
# SIGKILL for any still running 20 s later.
pids=()
names=()
logs=()
stop_all() {
  local status=$? i
  trap - EXIT INT TERM
  for i in "${!pids[@]}"; do kill -TERM "${pids[$i]}" 2>/dev/null || true; done
  local until=$((SECONDS + 20))
  for i in "${!pids[@]}"; do
    while kill -0 "${pids[$i]}" 2>/dev/null && [ $SECONDS -lt $until ]; do sleep 0.1; done
    if kill -0 "${pids[$i]}" 2>/dev/null; then
      echo "bench-prefetch: ${names[$i]} did not stop within 20 s of SIGTERM: killed" >&2
      kill -KILL "${pids[$i]}" 2>/dev/null || true
    fi
    wait "${pids[$i]}" 2>/dev/null || true
  done
  if [ "$keep_work" = 0 ]; then rm -rf "$work"; fi
  exit "$status"
}
trap stop_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

show_logs() {
  local i
  for i in "${!logs[@]}"; do
    echo "--- ${names[$i]} (last 30 lines of ${logs[$i]}) ---" >&2
    tail -n 30 "${logs[$i]}" >&2 || true
  done
}

# Starts a daemon with its output and log in one file, and waits (60 s at most) for the ready
# line it prints on standard output.
start() {  # name log command...
  local name=$1 log=$2
  shift 2
  "$@" >"$log" 2>&1 &
  pids+=($!); names+=("$name"); logs+=("$log")
  local pid=$! until=$((SECONDS + 60))
  until grep -qs "ready, listening on" "$log"; do
    if ! kill -0 "$pid" 2>/dev/null; then echo "bench-prefetch: $name exited at start" >&2; show_logs; exit 1; fi
    if [ $SECONDS -ge $until ]; then echo "bench-prefetch: $name not ready within 60 s" >&2; show_logs; exit 1; fi
    sleep 0.05
  done
}

days_ago() { date -u -d "-$1 days" +%Y%m%d; }

# The consortium's PKI: every certificate for localhost, serving and connecting.
"$consort" pki init-ca "$work/pki" >/dev/null
for name in COORDINATOR RSCH UHSX ASPH; do
  "$consort" pki issue "$name" --ca "$work/pki" --host localhost --host 127.0.0.1 --out "$work/pki" >/dev/null
done

# The rules: the members, their agreement, and the rule under test.
mkdir -p "$work/rules"
cat > "$work/rules/consortium.rules" <<'EOF'
member RSCH "RSCH test trust"
member UHSX "UHSX test trust"
member ASPH "ASPH test trust"
group trusts = RSCH, UHSX, ASPH
agreement "test" {
  purposes direct-care, emergency
  between trusts
}
EOF
cat > "$work/rules/routing.rules" <<'EOF'
rule "Oncology priors" {
  purpose direct-care
  at ASPH
  on instance-arrival
  when origin is local and StudyDescription ~ "ONC"
  prefetch priors from any member same modality within 3 years at most 3 priority normal
}
EOF

# Four free ports, held together while chosen so that they differ.
read -r coordinator_port rsch_port uhsx_port asph_port < <(python3 -c '
import socket
held = [socket.socket() for _ in range(4)]
for s in held: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in held))')

mkdir -p "$work/coordinator"
cat > "$work/coordinator/coordinator.conf" <<EOF
listen 127.0.0.1:$coordinator_port
certificate $work/pki/coordinator.pem
key $work/pki/coordinator.key
ca $work/pki/ca.pem
registry $work/coordinator/registry.sqlite
rules $work/rules
EOF

agent_config() {  # CODE PORT [peer lines]
  local code=$1 port=$2 lower base
  lower=$(echo "$1" | tr '[:upper:]' '[:lower:]')
  base="$work/$lower"
  shift 2
  mkdir -p "$base/export" "$base/import" "$base/state"
  {
    cat <<EOF
trust $code
state $base/state
watch $base/export
inbound $base/import
listen 127.0.0.1:$port
certificate $work/pki/$lower.pem
key $work/pki/$lower.key
ca $work/pki/ca.pem
rules $work/rules
retry-min 1 s
retry-max 2 s
coordinator https://localhost:$coordinator_port
EOF
    local line
    for line in "$@"; do echo "$line"; done
  } > "$base/agent.conf"
}
agent_config RSCH "$rsch_port"
agent_config UHSX "$uhsx_port"
agent_config ASPH "$asph_port" "peer RSCH https://localhost:$rsch_port" "peer UHSX https://localhost:$uhsx_port"

# The patient's history: three CT chest priors within three years (UHSX two, RSCH one).
synth() {  # out seed trust date description instances → the Study Instance UID
  if ! "$consort" synth --out "$1" --seed "$2" --trust "$3" --date "$4" --description "$5" --instances "$6" \
    --size 512x512 --modality CT --body-part CHEST --nhs "$nhs" 2>"$work/synth.err"; then
    cat "$work/synth.err" >&2
    exit 1
  fi
}
prior_uids=()
prior_dirs=()
for spec in "uhsx 51 UHSX 180" "uhsx 52 UHSX 365" "rsch 53 RSCH 730"; do
  read -r folder seed trust days <<< "$spec"
  uid=$(synth "$work/$folder/export" "$seed" "$trust" "$(days_ago "$days")" "CT CHEST" "$instances")
  prior_uids+=("$uid")
  prior_dirs+=("$work/$folder/export/$uid")
done
prior_bytes=$(du -scb --apparent-size "${prior_dirs[@]}" | tail -n 1 | cut -f1)
prior_mb=$(python3 -c "print(round($prior_bytes / 1e6))")
prior_counts=()
for dir in "${prior_dirs[@]}"; do prior_counts+=("$(find "$dir" -name '*.dcm' | wc -l)"); done
echo "bench-prefetch: $consort; work folder $work"
echo "priors: ${#prior_uids[@]} CT studies, ${prior_counts[*]} instances of 512x512, $prior_mb MB in all"

# The trigger, written aside now so that only the move is inside the timed part.
mkdir -p "$work/staging"
trigger=$(synth "$work/staging" 58 ASPH "$(days_ago 0)" "ONC CT CHEST RESTAGING" 3)

start coordinator "$work/coordinator/coordinator.log" "$consort" coordinator --config "$work/coordinator/coordinator.conf"
for code in RSCH UHSX ASPH; do
  lower=$(echo "$code" | tr '[:upper:]' '[:lower:]')
  start "$code's agent" "$work/$lower/agent.log" "$consort" agent --config "$work/$lower/agent.conf"
done

# Wait until the coordinator knows every prior, with its holder (the agents announce what they
# take from their watch folders at start).
known() {
  "$consort" locate --nhs "$nhs" --config "$work/asph/agent.conf" --json 2>/dev/null | python3 -c '
import json, sys
try:
    answer = json.load(sys.stdin)
except ValueError:
    sys.exit(1)
held = {s.get("study") or s.get("uid") for s in answer.get("studies", []) if s.get("locations")}
sys.exit(0 if set(sys.argv[1:]) <= held else 1)' "${prior_uids[@]}"
}
announce_start=$SECONDS
until known; do
  if [ $((SECONDS - announce_start)) -ge "$deadline_s" ]; then
    echo "bench-prefetch: the coordinator did not know the three priors within $deadline_s s" >&2
    "$consort" locate --nhs "$nhs" --config "$work/asph/agent.conf" >&2 || true
    show_logs
    exit 1
  fi
  sleep 0.5  # each lookup is audited at the coordinator: not too many
done
echo "the coordinator knows the three priors ($((SECONDS - announce_start)) s after the agents were ready)"

# The clock: from the trigger's move into ASPH's watch folder to the last prior instance in
# ASPH's inbound, seen by polling every 50 ms.
expect=()
for i in "${!prior_uids[@]}"; do expect+=("${prior_uids[$i]}=${prior_counts[$i]}"); done
started=$(date +%s.%N)
mv "$work/staging/$trigger" "$work/asph/export/$trigger"
set +e
result=$(python3 - "$work/asph/import" "$started" "$deadline_s" "${expect[@]}" <<'PY'
import os, sys, time
inbound, started, deadline = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
expect = dict(arg.split("=") for arg in sys.argv[4:])
def count(study):
    try:
        return sum(1 for name in os.listdir(os.path.join(inbound, study)) if name.endswith(".dcm") and not name.startswith("."))
    except FileNotFoundError:
        return 0
while True:
    now = time.time()
    counts = {study: count(study) for study in expect}
    if all(counts[study] >= int(n) for study, n in expect.items()):
        print(f"{now - started:.3f}")
        sys.exit(0)
    if now - started > deadline:
        print(" ".join(f"{study}:{counts[study]}/{n}" for study, n in expect.items()))
        sys.exit(1)
    time.sleep(0.05)
PY
)
arrived=$?
set -e

if [ "$arrived" != 0 ]; then
  complete=0
  read -ra entries <<< "$result"
  for entry in "${entries[@]}"; do
    got=${entry##*:}
    [ "${got%/*}" = "${got#*/}" ] && complete=$((complete + 1))
  done
  echo "bench-prefetch: not all priors at ASPH within $deadline_s s of the trigger (study:instances/expected):" >&2
  printf '  %s\n' "${entries[@]}" >&2
  "$consort" queue list --all --config "$work/asph/agent.conf" >&2 || true
  show_logs
  echo "prefetch: $complete of 3 priors ($prior_mb MB) at ASPH within $deadline_s s after the trigger (target < 10 s)"
  exit 1
fi
rate=$(python3 -c "print(f'{$prior_bytes / 1e6 / $result:.1f}')")
echo "all ${#prior_uids[@]} priors in ASPH's inbound: $prior_bytes bytes in $result s, $rate MB/s"
# Where the time went, from ASPH's audit trail (ms resolution): the coordinator's answer about
# the trigger's patient (the prefetch planned), then each fetch done.
python3 - "$work/asph/state/audit.log" "$started" <<'PY' || true
import datetime, json, sys
started = float(sys.argv[2])
for line in open(sys.argv[1]):
    record = json.loads(line)
    if record.get("action") not in ("lookup", "fetch"):
        continue
    when = datetime.datetime.strptime(record["time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc).timestamp()
    what = "prefetch planned (patient looked up)" if record["action"] == "lookup" else f"fetched {record.get('study')}: {record.get('detail')}"
    print(f"  +{when - started:6.3f} s  {what}")
PY
python3 -c "print(f'prefetch: 3 priors ($prior_mb MB) at ASPH {$result:.1f} s after the trigger (target < 10 s)')"
