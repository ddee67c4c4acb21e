#!/usr/bin/env bash
# Installs the Debian 12 packages Consort needs to build and run, if any are missing. Quick and
# silent when everything is there. Needs root (or sudo) only when it has something to install.
#
#   Deploy/install-build-dependencies.sh [extra-package ...]
set -euo pipefail
packages=(libssl-dev zlib1g-dev libcurl4-openssl-dev libsqlite3-dev libpq-dev pkg-config openssl "$@")
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "Installing Debian packages: ${missing[*]}" >&2
if [ "$(id -u)" -eq 0 ]; then sudo=""; elif command -v sudo >/dev/null; then sudo="sudo"; else
  echo "Not root and no sudo: install these packages, then run again: ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
