#!/usr/bin/env bash
# The agent at scale: an inventory of N instances (default 1,000,000, in N/200 studies) and J
# queued jobs (default 10,000) written straight into a fresh agent database (with the agent's
# own schema: the agent creates it), then the agent started on it: its peak RSS after it has
# run its queue manager for a while, and how long the operator commands take on that spool with
# the agent running (median of 15 runs each, the process start included).
# Targets: agent RSS under 100 MB (agent issue); `consort queue` and `consort status` under
# 100 ms (operator issue). The rows are written without the counts the agent keeps on each job
# and the inventory's totals; the database is marked as schema 0 so that the agent's start
# rebuilds them (the upgrade path of a database from before the counts: timed too).
#
#   Tests/Benchmarks/bench-agent-scale.sh [--instances N] [--jobs J] [--work DIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
instances=1000000
jobs=10000
work=${TMPDIR:-/tmp}/consort-bench-agent-scale
while [ $# -gt 0 ]; do
  case "$1" in
    --instances) instances=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --work) work=$2; shift 2 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "bench-agent-scale: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
if ! built=$(swift build -c release --product consort 2>&1); then echo "$built" >&2; exit 1; fi
consort=$(swift build -c release --show-bin-path)/consort
rm -rf "$work"; mkdir -p "$work"/{state,watch,inbound,rules,pki}
cd "$work"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout pki/ca.key -out pki/ca.pem -days 1 -subj "/CN=bench CA" \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout pki/rsch.key -out pki/rsch.csr -subj /CN=RSCH 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n' > pki/ext
openssl x509 -req -in pki/rsch.csr -CA pki/ca.pem -CAkey pki/ca.key -CAcreateserial -out pki/rsch.pem -days 1 -extfile pki/ext 2>/dev/null
cat > rules/r.rules <<'EOF'
member RSCH "a"
member UHSX "b"
group trusts = RSCH, UHSX
agreement "x" {
  purposes direct-care
  between trusts
}
EOF
cat > agent.conf <<EOF
trust RSCH
state $work/state
watch $work/watch
inbound $work/inbound
listen 127.0.0.1:0
certificate $work/pki/rsch.pem
key $work/pki/rsch.key
ca $work/pki/ca.pem
rules $work/rules
peer UHSX https://127.0.0.1:9 { connections 4 }
retry-min 1 h
retry-max 2 h
EOF
# Once to create the database with the agent's own schema.
"$consort" agent --config agent.conf >/dev/null 2>agent-first.log & pid=$!
for _ in $(seq 1 200); do [ -s state/agent.sqlite ] && grep -q "ready" agent-first.log && break; sleep 0.05; done
kill -TERM $pid; wait $pid || true
python3 - "$work/state/agent.sqlite" "$instances" "$jobs" <<'PY'
import sqlite3, sys, time
path, n, j = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
db = sqlite3.connect(path)
now = time.time()
per_study = 200
db.executemany("INSERT INTO studies (uid, origin, first_seen, last_instance, stable_fired, sample_path) VALUES (?, 'local', ?, ?, 1000000, ?)",
               ((f"2.25.{s}", now, now, f"/x/{s}/1.dcm") for s in range((n + per_study - 1) // per_study)))
db.executemany("INSERT INTO instances (sop, study, path, size, origin, arrived) VALUES (?, ?, ?, 525000, 'local', ?)",
               ((f"2.25.9{i}", f"2.25.{i // per_study}", f"/x/{i // per_study}/{i}.dcm", now) for i in range(n)))
db.executemany("INSERT INTO files (path, size, mtime, sop, taken) VALUES (?, 525000, ?, ?, ?)",
               ((f"/x/{i // per_study}/{i}.dcm", now, f"2.25.9{i}", now) for i in range(n)))
# J jobs, deferred an hour (the peer is down), each with a study's instances to send.
db.executemany("INSERT INTO jobs (id, kind, destination, study, rule, purpose, priority, created, state, next_attempt, last_error) "
               "VALUES (?, 'push', 'UHSX', ?, 'bench', 'direct-care', 1, ?, 'deferred', ?, 'peer down')",
               ((k + 1, f"2.25.{k}", now, now + 3600) for k in range(j)))
db.executemany("INSERT INTO job_instances (job, sop, path, size) VALUES (?, ?, ?, 525000)",
               ((k // per_study + 1, f"2.25.9{k}", f"/x/{k // per_study}/{k}.dcm") for k in range(min(n, j * per_study))))
db.execute("PRAGMA user_version = 0")
db.commit()
print(f"inventory: {n} instances in {(n + per_study - 1) // per_study} studies; spool: {j} jobs")
PY
started=$(date +%s.%N)
"$consort" agent --config agent.conf >/dev/null 2>agent.log & pid=$!
for _ in $(seq 1 1200); do grep -q " ready " agent.log 2>/dev/null && break; sleep 0.05; done
ready=$(date +%s.%N)
for _ in $(seq 1 600); do grep -q "catch-up scan done" agent.log 2>/dev/null && break; sleep 0.05; done
sleep 10  # the queue manager's passes over the spool, for its steady-state memory
rss=$(awk '/VmHWM/ {print int($2/1024)}' /proc/$pid/status)
cpu=$(awk '{print ($14+$15)/100}' /proc/$pid/stat)
# Median wall time of a command over 15 runs, in ms (its output discarded).
median_ms() {
  python3 - "$@" <<'PY'
import statistics, subprocess, sys, time
times = []
for _ in range(15):
    start = time.perf_counter()
    subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    times.append((time.perf_counter() - start) * 1000)
print(f"{statistics.median(times):.0f}")
PY
}
queue_ms=$(median_ms "$consort" queue --config agent.conf)
queue_json_ms=$(median_ms "$consort" queue --config agent.conf --json)
status_ms=$(median_ms "$consort" status --config agent.conf)
status_json_ms=$(median_ms "$consort" status --config agent.conf --json)
list_ms=$(median_ms "$consort" queue list --config agent.conf --json)
version_ms=$(median_ms "$consort" --version)
listed=$("$consort" queue list --config agent.conf --json | wc -l)
kill -TERM $pid; wait $pid || true
echo "agent with $instances instances and $jobs jobs: peak RSS $rss MB (target < 100 MB), CPU $cpu s in its first ~10 s"
echo "agent start on that database, rebuilding the kept counts (schema upgrade): $(python3 -c "print(f'{$ready - $started:.2f}')") s to ready"
echo "consort queue: $queue_ms ms, --json $queue_json_ms ms; consort status: $status_ms ms, --json $status_json_ms ms (target < 100 ms each)"
echo "consort queue list --json: $listed jobs in $list_ms ms; for scale, consort --version: $version_ms ms"
