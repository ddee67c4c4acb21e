#!/usr/bin/env bash
# Installs Consort as systemd services: the consort binary, the two units, the system user,
# example configurations (one per trust, one for the coordinator) and the routing rules.
# It never starts, enables or reloads anything; at the end it prints the next steps.
#
# Where things go (all of it under /usr/local and /etc, the places for software the
# administrator installs rather than the distribution's package manager, so that apt never
# touches these files and this script never touches apt's):
#   /usr/local/bin/consort                              the binary (always replaced)
#   /usr/local/lib/systemd/system/consort-*.service     the units (always replaced)
#   /usr/local/lib/sysusers.d/consort.conf              the consort user and group
#   /usr/local/share/doc/consort/README.md              the README
#   /usr/local/share/doc/consort/deploy.md              Deploy/README.md: settings, operations, runbook
#   /etc/consort/agent-<trust>.conf.example             examples (always replaced)
#   /etc/consort/coordinator.conf.example
#   /etc/consort/routing-rules/                         the consortium's rules (never overwritten)
# The units go to /usr/local/lib/systemd/system rather than /etc/systemd/system: systemd
# reads both, but /etc/systemd/system is the administrator's own. A site's changes then live
# in drop-ins there (systemctl edit consort-agent writes
# /etc/systemd/system/consort-agent.service.d/override.conf), which a reinstall never touches
# and which override the installed unit line by line. Likewise systemd-sysusers reads
# /usr/local/lib/sysusers.d, and a site may override it with /etc/sysusers.d/consort.conf.
#
# A file a site may have edited (a rules file) is never overwritten: when the installed copy
# differs, the new version is written next to it as FILE.new, and the script says so.
# Running it again with the same sources changes nothing (idempotent).
set -euo pipefail
umask 022

usage() {
  cat <<'EOF'
Usage: Deploy/install.sh [--prefix DIR] [--no-build] [--binary PATH]

Installs the consort binary, the systemd units consort-agent.service and
consort-coordinator.service, the consort system user (sysusers.d), example configurations
and the routing rules. Starts and enables nothing.

Options:
  --prefix DIR    install under DIR instead of / (a staged install, for tests or packaging)
  --no-build      do not build: install .build/release/consort as it is
  --binary PATH   install this consort binary (implies --no-build)
  -h, --help      this help

Without --no-build it builds first: swift build -c release --product consort. To keep the
build tree owned by you, build as yourself and install as root:
  swift build -c release --product consort && sudo Deploy/install.sh --no-build

Exit codes: 0 installed; 1 failed (the reason is on stderr); 2 usage error.
EOF
}

fail() { echo "install.sh: $*" >&2; exit 1; }
usage_error() { echo "install.sh: $*" >&2; echo "Try: Deploy/install.sh --help" >&2; exit 2; }

prefix=""
build=yes
binary=""
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix)
      if [ $# -lt 2 ] || [ -z "$2" ]; then usage_error "--prefix needs a folder"; fi
      prefix=$2; shift 2 ;;
    --prefix=*) prefix=${1#--prefix=}; [ -n "$prefix" ] || usage_error "--prefix needs a folder"; shift ;;
    --binary)
      if [ $# -lt 2 ] || [ -z "$2" ]; then usage_error "--binary needs the path of a consort binary"; fi
      binary=$2; build=no; shift 2 ;;
    --binary=*) binary=${1#--binary=}; [ -n "$binary" ] || usage_error "--binary needs a path"; build=no; shift ;;
    --no-build) build=no; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage_error "unknown argument: $1" ;;
  esac
done

source_dir=$(cd "$(dirname "$0")/.." && pwd)
deploy="$source_dir/Deploy"

if [ -n "$binary" ]; then
  [ -f "$binary" ] || fail "the consort binary $binary does not exist"
  [ -x "$binary" ] || fail "the consort binary $binary is not executable"
fi

# An absolute prefix without a trailing slash; "" is the real root.
if [ -n "$prefix" ]; then
  prefix=$(realpath -m -- "$prefix")
  if [ "$prefix" = / ]; then prefix=""; fi
fi
if [ -z "$prefix" ] && [ "$(id -u)" -ne 0 ]; then
  fail "installing into / needs root: run it with sudo, or give --prefix DIR for a staged install"
fi

for f in README.md systemd/consort-agent.service systemd/consort-coordinator.service systemd/consort-crl.service systemd/consort-crl.timer systemd/consort-crl-reload.path systemd/consort-crl-reload.service systemd/consort.sysusers coordinator.conf; do
  [ -f "$deploy/$f" ] || fail "missing $deploy/$f (run this script from a Consort source tree)"
done
[ -d "$source_dir/routing-rules" ] || fail "missing $source_dir/routing-rules"

# The binary.
if [ "$build" = yes ]; then
  command -v swift >/dev/null || fail "swift is not installed (see README.md), or give --binary PATH"
  echo "Building consort (release)..." >&2
  (cd "$source_dir" && swift build -c release --product consort) >&2 || fail "the build failed"
  binary="$(cd "$source_dir" && swift build -c release --show-bin-path)/consort"
elif [ -z "$binary" ]; then
  binary="$source_dir/.build/release/consort"
  [ -e "$binary" ] || fail "no $binary: build it (swift build -c release --product consort) or give --binary PATH"
fi
[ -f "$binary" ] || fail "the consort binary $binary does not exist"
[ -x "$binary" ] || fail "the consort binary $binary is not executable"

installed=()   # what was written, for the summary
kept=()        # files left as they were, with their new version beside them as .new

# put MODE SOURCE DEST: install, replacing DEST (ours: binaries, units, examples).
put() {
  local mode=$1 src=$2 dest=$3
  mkdir -p -- "$(dirname "$dest")"
  if [ -f "$dest" ] && cmp -s -- "$src" "$dest" && [ "$(stat -c %a -- "$dest")" = "${mode#0}" ]; then
    return 0
  fi
  # install(1) unlinks the old file first, so replacing the binary of a running agent is safe.
  install -m "$mode" -- "$src" "$dest" || fail "cannot install $dest"
  installed+=("$dest")
}

# put_config MODE SOURCE DEST: install DEST unless a different one is there (a site's file):
# then write DEST.new beside it and leave DEST alone.
put_config() {
  local mode=$1 src=$2 dest=$3
  mkdir -p -- "$(dirname "$dest")"
  if [ ! -e "$dest" ]; then
    install -m "$mode" -- "$src" "$dest" || fail "cannot install $dest"
    installed+=("$dest")
  elif cmp -s -- "$src" "$dest"; then
    rm -f -- "$dest.new"   # an older .new is out of date once the file matches
  else
    if ! { [ -f "$dest.new" ] && cmp -s -- "$src" "$dest.new"; }; then
      install -m "$mode" -- "$src" "$dest.new" || fail "cannot install $dest.new"
    fi
    kept+=("$dest")
  fi
}

put 0755 "$binary" "$prefix/usr/local/bin/consort"
put 0644 "$deploy/systemd/consort-agent.service" "$prefix/usr/local/lib/systemd/system/consort-agent.service"
put 0644 "$deploy/systemd/consort-coordinator.service" "$prefix/usr/local/lib/systemd/system/consort-coordinator.service"
# Republishing the CA's CRL daily: installed everywhere, enabled only on the CA's machine.
put 0644 "$deploy/systemd/consort-crl.service" "$prefix/usr/local/lib/systemd/system/consort-crl.service"
put 0644 "$deploy/systemd/consort-crl.timer" "$prefix/usr/local/lib/systemd/system/consort-crl.timer"
# Reloading the daemons when a new CRL is copied in: enabled at each site.
put 0644 "$deploy/systemd/consort-crl-reload.path" "$prefix/usr/local/lib/systemd/system/consort-crl-reload.path"
put 0644 "$deploy/systemd/consort-crl-reload.service" "$prefix/usr/local/lib/systemd/system/consort-crl-reload.service"
put 0644 "$deploy/systemd/consort.sysusers" "$prefix/usr/local/lib/sysusers.d/consort.conf"
put 0644 "$source_dir/README.md" "$prefix/usr/local/share/doc/consort/README.md"
put 0644 "$deploy/README.md" "$prefix/usr/local/share/doc/consort/deploy.md"

# /etc/consort: root's, readable by all (the keys in it protect themselves with mode 0600).
mkdir -p -- "$prefix/etc/consort"
for conf in "$deploy"/agent-*.conf; do
  [ -f "$conf" ] || continue
  name=$(basename "$conf")
  put 0644 "$conf" "$prefix/etc/consort/$name.example"
done
put 0644 "$deploy/coordinator.conf" "$prefix/etc/consort/coordinator.conf.example"

# The routing rules: the whole folder, each file installed only where the site has not
# changed it.
while IFS= read -r -d '' rule; do
  relative=${rule#"$source_dir/routing-rules/"}
  put_config 0644 "$rule" "$prefix/etc/consort/routing-rules/$relative"
done < <(find "$source_dir/routing-rules" -type f ! -name '*.new' -print0 | sort -z)

# The binary is linked against the Swift runtime of the machine it was built on.
if command -v ldd >/dev/null && missing=$(ldd "$prefix/usr/local/bin/consort" 2>/dev/null | grep 'not found'); then
  echo "install.sh: warning: $prefix/usr/local/bin/consort needs libraries this machine lacks:" >&2
  echo "$missing" >&2
  echo "  (install the Swift runtime it was built with, or build with --static-swift-stdlib)" >&2
fi

# What was done, then what is left to do.
where=${prefix:-/}
if [ ${#installed[@]} -eq 0 ]; then
  echo "Consort is installed in $where (nothing changed)."
else
  echo "Installed in $where:"
  printf '  %s\n' "${installed[@]}"
fi
if [ ${#kept[@]} -gt 0 ]; then
  echo "Kept as they were (they differ from this version, which is beside each as .new: compare and merge):"
  printf '  %s\n' "${kept[@]}"
fi
if [ -n "$prefix" ]; then
  echo "(A staged install: the paths below are relative to $prefix.)"
fi
cat <<'EOF'

Nothing was started or enabled. Next steps, as root:
  1. Create the consort user and group:
       systemd-sysusers /usr/local/lib/sysusers.d/consort.conf
  2. Put this site's certificate and key (from the consortium CA) and the CA in /etc/consort;
     the key owned by consort, mode 0600.
  3. Write the configuration from this trust's example, and edit it:
       cp /etc/consort/agent-<trust>.conf.example /etc/consort/agent.conf
  4. Check it, as the service will run:
       runuser -u consort -- consort config check /etc/consort/agent.conf
  5. If the archive is not /srv/pacs/export (read) and /srv/pacs/import (write), say where:
       systemctl edit consort-agent      (ReadOnlyPaths= and ReadWritePaths=, see the unit)
  6. Start it, now and at boot:
       systemctl daemon-reload
       systemctl enable --now consort-agent
       systemctl status consort-agent    (and: journalctl -u consort-agent)
  7. Let operators use consort queue and consort status: usermod -aG consort NAME
The coordinator (one machine for the consortium): /etc/consort/coordinator.conf from
coordinator.conf.example, then systemctl enable --now consort-coordinator.
EOF
