#!/usr/bin/env bash
# What the test suite and benchmarks need beside the build dependencies: DCMTK (dcmdump),
# dicom3tools (dciodvfy) and pydicom, the third-party readers we check ourselves against, and
# curl, the real client the HTTPS server is tested with (certificates come from openssl), strace
# (which shows the receiver makes instances durable before it names them), and
# Orthanc with its DICOMweb plugin, the PACS our DICOMweb client and server are tested against
# (the tests start their own instance on loopback; gcc builds its bind shim), Prometheus
# (promtool checks the agent's /metrics page; a real server scrapes a running agent),
# systemd-analyze (checks the units in Deploy/), and setpriv (a client as another user is
# refused by the admin socket). PostgreSQL 15 is there for the coordinator's registry tests:
# Tests/Support/throwaway-postgres.sh starts a throwaway server from its binaries (psql comes
# with it), and libpq-dev is the client library the coordinator links.
# Installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
Deploy/install-build-dependencies.sh dcmtk dicom3tools python3 curl orthanc orthanc-dicomweb gcc libc6-dev time strace prometheus procps util-linux systemd postgresql-15 libpq-dev
pydicom_version=3.0.2  # the version the conformance figures in Tests/README.md were taken with
if ! python3 -c "import pydicom, sys; sys.exit(pydicom.__version__ != '$pydicom_version')" 2>/dev/null; then
  echo "Installing pydicom $pydicom_version from PyPI" >&2
  # A Debian-managed Python refuses pip (PEP 668) unless told; a pyenv or venv Python does not.
  python3 -m pip install -q "pydicom==$pydicom_version" 2>/dev/null \
    || python3 -m pip install -q --break-system-packages "pydicom==$pydicom_version"
fi
# pynetdicom: a second DIMSE implementation beside DCMTK, scriptable (a PACS that answers a
# chosen status, refuses a SOP class); pinned as pydicom is. Installed into a folder of its own,
# not onto PATH: its console scripts are named storescu, storescp, echoscu ... and would shadow
# DCMTK's. Tests/ConsortCLITests/Interop/pynetdicom_pacs.py looks for it there.
pynetdicom_version=2.1.1
pynetdicom_target="${XDG_CACHE_HOME:-$HOME/.cache}/consort-tests/python"
if ! PYTHONPATH="$pynetdicom_target" python3 -c "import importlib.metadata as m, sys; sys.exit(m.version('pynetdicom') != '$pynetdicom_version')" 2>/dev/null; then
  echo "Installing pynetdicom $pynetdicom_version from PyPI into $pynetdicom_target" >&2
  python3 -m pip install -q --no-deps --upgrade --target "$pynetdicom_target" "pynetdicom==$pynetdicom_version" 2>/dev/null \
    || python3 -m pip install -q --no-deps --upgrade --break-system-packages --target "$pynetdicom_target" "pynetdicom==$pynetdicom_version"
fi

# PS3.15 Table E.1-1 with its option columns, as the `dicom-standard` package (PyPI) carries it:
# the de-identification tests check our output against it with pydicom
# (Tests/DeidentificationTests/check_deidentified.py), independently of the table generated into
# Sources/Deidentification. Only the JSON is kept; nothing is installed.
profile_table="${XDG_CACHE_HOME:-$HOME/.cache}/consort-tests/confidentiality_profile_attributes.json"
if [ ! -s "$profile_table" ]; then
  echo "Fetching PS3.15 Table E.1-1 (dicom-standard 0.1.0) from PyPI" >&2
  mkdir -p "$(dirname "$profile_table")"
  python3 - "$profile_table" <<'PYTHON'
import glob, subprocess, sys, tempfile, zipfile
with tempfile.TemporaryDirectory() as folder:
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", folder, "dicom-standard==0.1.0"], check=True)
    with zipfile.ZipFile(glob.glob(folder + "/dicom_standard-0.1.0-*.whl")[0]) as archive:
        name = next(n for n in archive.namelist() if n.endswith("/confidentiality_profile_attributes.json"))
        open(sys.argv[1] + ".part", "wb").write(archive.read(name))
import os
os.replace(sys.argv[1] + ".part", sys.argv[1])
PYTHON
fi
