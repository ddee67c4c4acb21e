#!/usr/bin/env bash
# A throwaway PostgreSQL 15 server for the coordinator's registry tests.
#
#   Tests/Support/throwaway-postgres.sh start DIR   # prints one line: a libpq connection string
#   Tests/Support/throwaway-postgres.sh stop DIR    # stops it and removes DIR
#   Tests/Support/throwaway-postgres.sh standby PRIMARY DIR
#       # a streaming standby of the server in PRIMARY, in DIR (pg_basebackup -R), made the
#       # primary's synchronous standby: a commit the primary acknowledges is on both. Prints the
#       # standby's connection string. (Synchronous: the primary waits for it, so stop the
#       # standby after the primary, or promote it.)
#   Tests/Support/throwaway-postgres.sh promote DIR  # the standby in DIR becomes a primary
#   Tests/Support/throwaway-postgres.sh kill DIR     # SIGKILL to the server and every backend
#                                                    # (a machine lost, not a shutdown)
#
# start makes a fresh cluster in DIR (which must be absent or empty), listening only on a Unix
# socket in DIR — no TCP, so any number of servers can run at once without fighting over ports,
# and nothing on the machine's network can reach a server that trusts everyone — and prints
#
#   host=DIR port=5432 user=consort dbname=consort
#
# (the port only names the socket file, DIR/.s.PGSQL.5432). The cluster is built for speed, not
# durability: fsync and full-page writes are off; a crash loses it, which a test does not mind.
#
# initdb and postgres refuse to run as root, so as root this runs them as the `postgres` system
# user (the Debian package makes it; `nobody` otherwise) and gives DIR to that user; every
# directory above DIR must therefore be searchable by that user (a 0700 mkdtemp folder as the
# parent is not — pass the mkdtemp folder itself as DIR). Root clients connect regardless, since
# root is not held back by file permissions. As any other user, it all runs as that user.
#
# CONSORT_PG_SHARED_BUFFERS (e.g. 1GB) sets shared_buffers, 16MB otherwise (benchmarks at
# millions of rows ask for more, as a production server would have).
#
# Exit status: 0 done; 77 PostgreSQL 15 is not installed (the test should skip, with the reason
# printed); anything else a failure, with the reason on stderr. Every wait has a deadline: nothing
# here can hang a test run.
set -euo pipefail

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
}

bindir=${CONSORT_PG_BINDIR:-/usr/lib/postgresql/15/bin}  # Debian's layout for PostgreSQL 15
port=5432          # names the socket file only; DIR keeps each server's socket apart
ready_deadline=30  # seconds the server has to accept connections after starting
stop_deadline=30   # seconds pg_ctl stop waits before we escalate

die() { echo "throwaway-postgres: $*" >&2; exit 1; }

case "${1:-}" in
  -h|--help|help) usage; exit 0 ;;
  start|stop|promote|kill) [ $# -eq 2 ] || { usage; exit 2; } ;;
  standby) [ $# -eq 3 ] || { usage; exit 2; }; primary=$(realpath -m -- "$2"); set -- "$1" "$3" ;;
  *) usage; exit 2 ;;
esac
command=$1
dir=$(realpath -m -- "$2")  # absolute and normalised: it goes into the config and the conninfo
if [ -n "${CONSORT_PG_SHARED_BUFFERS:-}" ] && ! [[ $CONSORT_PG_SHARED_BUFFERS =~ ^[0-9]+(kB|MB|GB)$ ]]; then
  echo "throwaway-postgres: CONSORT_PG_SHARED_BUFFERS must be a size such as 512MB or 1GB, not '$CONSORT_PG_SHARED_BUFFERS'" >&2
  exit 2
fi

# Our own PG* environment must not steer the tools below at some other server.
unset PGHOST PGHOSTADDR PGPORT PGUSER PGDATABASE PGSERVICE PGSERVICEFILE PGOPTIONS PGPASSWORD \
      PGPASSFILE PGDATA PGSSLMODE PGCONNECT_TIMEOUT

for tool in initdb pg_ctl postgres pg_isready psql pg_basebackup; do
  if [ ! -x "$bindir/$tool" ]; then
    echo "SKIP: PostgreSQL 15 is not installed (Debian package postgresql-15)"
    exit 77
  fi
done

# Who runs the server: as root, an unprivileged user; otherwise ourselves.
as_owner=()
if [ "$(id -u)" -eq 0 ]; then
  if id -u postgres >/dev/null 2>&1; then owner=postgres; else owner=nobody; fi
  owner_group=$(id -gn "$owner")
  # setpriv rather than su/runuser: no PAM, no login session, nothing that can prompt or hang.
  as_owner=(setpriv --reuid="$owner" --regid="$owner_group" --init-groups --reset-env --)
fi
# The tools run with / as their working directory: the caller's (say /root) may be out of reach
# to the owner, and initdb complains about that.
cd /

data=$dir/data
log=$dir/postgres.log
marker=$dir/.throwaway-postgres  # stop removes only directories start made

# DIR made ready for a server: a fresh, empty folder only its owner can reach, marked as ours.
fresh_dir() {
  # The socket path must fit in sun_path (107 bytes plus NUL).
  local socket=$dir/.s.PGSQL.$port
  [ ${#socket} -le 107 ] || die "DIR is too long for a Unix socket path (${#socket} > 107 bytes): $dir"
  if [ -e "$dir" ]; then
    [ -d "$dir" ] || die "$dir exists and is not a directory"
    [ -z "$(ls -A -- "$dir")" ] || die "$dir is not empty: a server wants a fresh directory"
  else
    mkdir -- "$dir"
  fi
  # 0700: the server trusts anyone who reaches the socket, so only its owner (and root) may.
  chmod 0700 -- "$dir"
  if [ ${#as_owner[@]} -gt 0 ]; then
    chown "$owner:$owner_group" -- "$dir"
    "${as_owner[@]}" test -x "$dir" -a -w "$dir" \
      || die "user $owner cannot reach $dir: some directory above it is not searchable by $owner (e.g. a 0700 mkdtemp folder; pass that folder itself as DIR)"
  fi
  touch -- "$marker"
}

# The server in $data started (pg_ctl -w: until it accepts connections or dies).
launch() {
  # pg_ctl -w waits until the server is up (it notices at once a server that died), for at most
  # ready_deadline seconds; pg_isready below then checks from the client side, through the socket
  # in the connection string we print, with the same deadline. -l: the server's output goes to
  # the log, never to our stdout (a caller reading our stdout to the end would otherwise wait for
  # the server to exit). pg_ctl puts the server in its own session, so it outlives this script.
  # The server outlives this script: it must not inherit any descriptor of our caller's beyond
  # 0-2 (which go to files here). A caller's pipe left open in the server would make a caller
  # that reads to the end of its output wait for ever (it did: a Swift test hung on it).
  for fd in /proc/$$/fd/*; do
    fd=${fd##*/}
    if [ "$fd" -gt 2 ]; then eval "exec $fd>&-" 2>/dev/null || true; fi
  done
  if ! timeout $((ready_deadline + 5)) "${as_owner[@]}" "$bindir/pg_ctl" start -w \
       -t "$ready_deadline" -D "$data" -l "$log" </dev/null >"$dir/pg_ctl.log" 2>&1; then
    cat -- "$dir/pg_ctl.log" >&2
    [ -f "$log" ] && tail -n 30 -- "$log" >&2
    stop_server || true
    die "the server in $data did not start within ${ready_deadline}s (logs above; left in $dir)"
  fi
}

start() {
  fresh_dir

  # --no-sync: nothing here needs to survive a power cut. --locale=C: UTF8 works whatever the
  # caller's LANG is (or isn't).
  if ! timeout 120 "${as_owner[@]}" "$bindir/initdb" -D "$data" -U consort --auth=trust \
       --encoding=UTF8 --locale=C --no-sync --no-instructions >"$dir/initdb.log" 2>&1; then
    cat -- "$dir/initdb.log" >&2
    die "initdb failed in $data (log above)"
  fi

  # Later settings in postgresql.conf win over initdb's. Single quotes are doubled for the
  # config file's quoting.
  local quoted=${dir//\'/\'\'}
  cat >>"$data/postgresql.conf" <<EOF

# throwaway-postgres.sh: a test server, reachable only through its Unix socket in DIR.
listen_addresses = ''
unix_socket_directories = '$quoted'
unix_socket_permissions = 0700
port = $port
# Speed over durability: a crashed test cluster is thrown away, never recovered.
fsync = off
synchronous_commit = off
full_page_writes = off
# Small, so that several can run at once on a test machine (see CONSORT_PG_SHARED_BUFFERS).
shared_buffers = ${CONSORT_PG_SHARED_BUFFERS:-16MB}
max_connections = 50
EOF

  launch

  local deadline=$((SECONDS + ready_deadline)) status
  while :; do
    status=0
    "$bindir/pg_isready" -q -h "$dir" -p "$port" -U consort -d postgres -t 2 || status=$?
    [ "$status" -eq 0 ] && break
    # 1 = still starting up, 2 = no response. Anything else, or the deadline, is a failure.
    if [ "$status" -gt 2 ] || [ $SECONDS -ge $deadline ]; then
      [ -f "$log" ] && tail -n 30 -- "$log" >&2
      stop_server || true
      die "the server in $dir did not accept connections within ${ready_deadline}s (log above; left in $dir)"
    fi
    sleep 0.1
  done

  if ! PGCONNECT_TIMEOUT=10 timeout 30 "$bindir/psql" -X -q -v ON_ERROR_STOP=1 \
       "host=$dir port=$port user=consort dbname=postgres" -c 'CREATE DATABASE consort' \
       </dev/null >&2; then
    stop_server || true
    die "could not create database consort in the server in $dir (left in $dir)"
  fi

  echo "host=$dir port=$port user=consort dbname=consort"
}

# Stops the server in $data, if one runs there: fast (disconnects clients, clean shutdown), then
# immediate, then SIGKILL — each bounded, so a wedged server cannot hang the tests.
stop_server() {
  [ -f "$data/postmaster.pid" ] || return 0
  # A server already dead (`kill`): its pid file is stale, and pg_ctl would wait out its
  # deadline for a zombie it can still signal.
  local running
  running=$(head -n 1 -- "$data/postmaster.pid" 2>/dev/null || true)
  if [[ $running =~ ^[0-9]+$ ]] && ! alive "$running"; then return 0; fi
  timeout $((stop_deadline + 5)) "${as_owner[@]}" "$bindir/pg_ctl" stop -D "$data" -m fast -w \
    -t "$stop_deadline" </dev/null >&2 && return 0
  echo "throwaway-postgres: fast shutdown failed; trying immediate" >&2
  timeout 15 "${as_owner[@]}" "$bindir/pg_ctl" stop -D "$data" -m immediate -w -t 10 \
    </dev/null >&2 && return 0
  local pid
  pid=$(head -n 1 -- "$data/postmaster.pid" 2>/dev/null || true)
  if [[ $pid =~ ^[0-9]+$ ]] && alive "$pid"; then
    echo "throwaway-postgres: killing postmaster $pid" >&2
    kill -KILL "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + 10))
    while alive "$pid" && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
    ! alive "$pid" || die "postmaster $pid is still alive"
  fi
}

# A process that exists and is not a zombie. The postmaster is reparented to PID 1 when pg_ctl
# exits, and a PID 1 that does not reap (some containers) leaves it a zombie after it stops:
# kill -0 would still succeed on that.
alive() {
  local state
  state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$state" ] && [ "$state" != Z ]
}

stop() {
  [ -e "$dir" ] || exit 0  # already gone: stopping twice is fine
  # Never rm -rf a directory this script did not make.
  [ -f "$marker" ] || die "$dir was not made by throwaway-postgres.sh start; not removing it"
  stop_server
  rm -rf -- "$dir"
}

# A standby of the server in $primary: a base backup of it, told where the primary is (-R
# writes primary_conninfo and standby.signal), on its own socket; then the primary is told to
# wait for it at each commit. Nothing here is home-made where PostgreSQL has the feature:
# pg_basebackup, streaming replication and synchronous_standby_names, as Deploy/postgresql-standby.md
# describes them.
standby() {
  [ -f "$primary/.throwaway-postgres" ] || die "$primary was not made by throwaway-postgres.sh start"
  fresh_dir
  if ! timeout 120 "${as_owner[@]}" "$bindir/pg_basebackup" -h "$primary" -p "$port" -U consort -D "$data" -R \
       --checkpoint=fast --wal-method=stream --no-sync >"$dir/basebackup.log" 2>&1; then
    cat -- "$dir/basebackup.log" >&2
    die "pg_basebackup from $primary failed (log above)"
  fi
  # Its own socket, and the name the primary knows it by (primary_conninfo as -R wrote it has
  # no application_name; the walreceiver then gives cluster_name).
  local quoted=${dir//\'/\'\'}
  cat >>"$data/postgresql.conf" <<EOF

# throwaway-postgres.sh standby: its own socket; the primary's name for it.
unix_socket_directories = '$quoted'
cluster_name = 'standby'
EOF
  launch
  # Synchronous from here: the primary's commits wait until the standby has their WAL on disk
  # (synchronous_commit on, which the throwaway server otherwise turns off for speed). Set on
  # the primary after the base backup, so the standby, promoted, does not wait for a standby of
  # its own that does not exist.
  PGCONNECT_TIMEOUT=10 timeout 30 "$bindir/psql" -X -q -v ON_ERROR_STOP=1 "host=$primary port=$port user=consort dbname=postgres" \
    -c "ALTER SYSTEM SET synchronous_standby_names = 'standby'" -c "ALTER SYSTEM SET synchronous_commit = on" \
    -c "SELECT pg_reload_conf()" </dev/null >/dev/null \
    || { stop_server || true; die "could not make the standby synchronous on the primary in $primary (standby stopped; left in $dir)"; }
  local deadline=$((SECONDS + ready_deadline)) state=""
  while [ "$state" != sync ]; do
    [ $SECONDS -lt $deadline ] || { stop_server || true; die "the standby in $dir was not streaming synchronously within ${ready_deadline}s (state '$state'; standby stopped, left in $dir)"; }
    sleep 0.1
    state=$(PGCONNECT_TIMEOUT=5 timeout 10 "$bindir/psql" -X -A -t "host=$primary port=$port user=consort dbname=postgres" \
      -c "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'standby'" </dev/null 2>/dev/null || true)
  done
  echo "host=$dir port=$port user=consort dbname=consort"
}

promote() {
  [ -f "$marker" ] || die "$dir was not made by throwaway-postgres.sh"
  timeout $((ready_deadline + 5)) "${as_owner[@]}" "$bindir/pg_ctl" promote -w -t "$ready_deadline" -D "$data" </dev/null >&2 \
    || die "the standby in $dir was not promoted within ${ready_deadline}s"
}

# Every process of the server at once, as the loss of its machine would take them. Each backend
# is in a session of its own (PostgreSQL's children call setsid), so a signal to the
# postmaster's group reaches the postmaster alone, and a postmaster killed alone leaves its
# backends serving the connections they have (they committed on the "dead" server in a first
# try of this). So: the postmaster stopped (it can fork no more), its children listed, then
# SIGKILL to all of them in one call.
kill_server() {
  [ -f "$marker" ] || die "$dir was not made by throwaway-postgres.sh"
  local pid children="" stat rest fields
  pid=$(head -n 1 -- "$data/postmaster.pid" 2>/dev/null || true)
  [[ $pid =~ ^[0-9]+$ ]] && alive "$pid" || die "no server runs in $dir"
  kill -STOP "$pid"
  # Its children from /proc (no procps needed): a stat line is "PID (COMM) STATE PPID …", and
  # COMM may hold spaces and parentheses, so the fields are read after its last ')'.
  for stat in /proc/[0-9]*/stat; do
    rest=$(cat -- "$stat" 2>/dev/null) || continue
    read -r -a fields <<<"${rest##*) }"
    [ "${fields[1]:-}" = "$pid" ] && { stat=${stat#/proc/}; children+=" ${stat%/stat}"; }
  done
  # shellcheck disable=SC2086 # one word a process
  kill -KILL "$pid" $children 2>/dev/null || true
  local deadline=$((SECONDS + 10)) child
  for child in $pid $children; do
    while alive "$child" && [ $SECONDS -lt $deadline ]; do sleep 0.05; done
    ! alive "$child" || die "process $child of the server in $dir is still alive"
  done
  # All gone: the pid file would name a number the system may give to another process, which a
  # later stop would then signal.
  rm -f -- "$data/postmaster.pid"
}

case "$command" in
  kill) kill_server ;;
  *) "$command" ;;
esac
