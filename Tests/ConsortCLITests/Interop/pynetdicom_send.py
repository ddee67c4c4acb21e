#!/usr/bin/env python3
"""A modality that speaks DIMSE, made with pynetdicom: C-ECHO, then C-STORE of each file given
(one association, each file's own SOP class and transfer syntax proposed), to the agent's SCP
in the tests. Prints "echo 0xSTATUS", then "0xSTATUS SOPInstanceUID" per file; exits 1 when the
association is rejected or aborted. Looks for pynetdicom where Tests/install-test-dependencies.sh
installs it (a folder of its own, off PATH).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "consort-tests", "python"))
from pydicom import dcmread  # noqa: E402
from pynetdicom import AE  # noqa: E402
from pynetdicom.sop_class import Verification  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, required=True)
parser.add_argument("--called", required=True)
parser.add_argument("--calling", default="PYNETDICOM")
parser.add_argument("files", nargs="+")
args = parser.parse_args()

datasets = [dcmread(path) for path in args.files]
ae = AE(ae_title=args.calling)
ae.add_requested_context(Verification)
for sop_class, syntax in sorted({(str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID)) for ds in datasets}):
    ae.add_requested_context(sop_class, syntax)
assoc = ae.associate("127.0.0.1", args.port, ae_title=args.called)
if not assoc.is_established:
    print("association not established", file=sys.stderr)
    sys.exit(1)
status = assoc.send_c_echo()
print(f"echo 0x{status.Status:04X}" if status else "echo none")
for ds in datasets:
    status = assoc.send_c_store(ds)
    print(f"0x{status.Status:04X} {ds.SOPInstanceUID}" if status else f"none {ds.SOPInstanceUID}")
assoc.release()
