#!/usr/bin/env python3
"""A PACS that speaks DIMSE only, made with pynetdicom: the other side of the agent's
`local NAME dimse AET@HOST:PORT` deliveries in the tests.

It takes C-ECHO and C-STORE of the SOP classes given (--sop-class, default CT Image Storage) in
explicit and implicit VR little endian, writes each instance as it came (its data set's bytes
untouched, behind a File Meta Information) to OUT/<SOPInstanceUID>.dcm, and answers:
  --refuse UID          0xC000 (cannot understand) for that SOP Instance UID, every time
  --busy-once UID       0xA700 (out of resources) the first time that instance comes, then stores it
  --syntax UID          accept only these transfer syntaxes (repeatable; default both above)
Every request is logged to OUT/../pacs.log as "STATUS SOPInstanceUID". `--check` exits 0 when
pynetdicom can be imported (Tests/install-test-dependencies.sh installs it into a folder of its
own, off PATH, where this script looks first).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "consort-tests", "python"))
if sys.argv[1:] == ["--check"]:
    try:
        import pynetdicom  # noqa: F401
    except ImportError:
        sys.exit(1)
    sys.exit(0)

from pydicom.dataset import FileMetaDataset
from pydicom.filewriter import write_file_meta_info
from pynetdicom import AE, evt
from pynetdicom.sop_class import Verification

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, required=True)
parser.add_argument("--aet", default="PACS")
parser.add_argument("--out", required=True)
parser.add_argument("--sop-class", action="append", default=[])
parser.add_argument("--refuse", action="append", default=[])
parser.add_argument("--busy-once", action="append", default=[])
parser.add_argument("--syntax", action="append", default=[])
args = parser.parse_args()
os.makedirs(args.out, exist_ok=True)
log = open(os.path.join(os.path.dirname(os.path.abspath(args.out)), "pacs.log"), "a", buffering=1)
busy = set(args.busy_once)


def on_store(event):
    uid = event.request.AffectedSOPInstanceUID
    if uid in args.refuse:
        log.write(f"0xC000 {uid}\n")
        return 0xC000
    if uid in busy:
        busy.discard(uid)
        log.write(f"0xA700 {uid}\n")
        return 0xA700
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = event.request.AffectedSOPClassUID
    meta.MediaStorageSOPInstanceUID = uid
    meta.TransferSyntaxUID = event.context.transfer_syntax
    meta.ImplementationClassUID = "1.2.826.0.1.3680043.9.7433.1"
    path = os.path.join(args.out, uid + ".dcm")
    with open(path + ".part", "wb") as f:
        f.write(b"\0" * 128 + b"DICM")
        write_file_meta_info(f, meta, enforce_standard=True)
        f.write(event.request.DataSet.getvalue())
    os.rename(path + ".part", path)
    log.write(f"0x0000 {uid}\n")
    return 0x0000


ae = AE(ae_title=args.aet)
ae.maximum_pdu_size = 16384
syntaxes = args.syntax or ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"]
for sop_class in args.sop_class or ["1.2.840.10008.5.1.4.1.1.2"]:
    ae.add_supported_context(sop_class, syntaxes)
ae.add_supported_context(Verification)
ae.require_called_aet = True
print(f"listening on {args.port} as {args.aet}", file=sys.stderr, flush=True)
ae.start_server(("127.0.0.1", args.port), block=True, evt_handlers=[(evt.EVT_C_STORE, on_store)])
