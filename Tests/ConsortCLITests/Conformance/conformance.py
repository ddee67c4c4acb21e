#!/usr/bin/env python3
"""Does `consort dump --json` read DICOM headers as pydicom does?

    conformance.py --consort PATH/TO/consort [--report FILE] DIR...

For every file under each DIR: pydicom's reading (pydicom 3, stop_before_pixels) rendered in the
canonical form that `consort dump --json` prints (README.md beside this file), and ours, compared
element by element. Then a closing line "N passed, M failed".

  * pydicom reads the file: ours must agree exactly, or the file must be in KNOWN_DIFFERENCES
    with the outcome we expect instead (each one justified there).
  * pydicom cannot read it: the file must be in PYDICOM_CANNOT_READ (with why), and ours must
    give a reading or a clear error record; a crash (no record, or the dump process killed by a
    signal) fails the run. A file pydicom (or our rendering of its reading) fails on that is not
    listed fails the run: nothing leaves the comparison silently.

Exit status 0 when nothing failed and something passed, 1 otherwise, 2 on usage errors.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import subprocess
import sys
import warnings

try:
    import pydicom
    from pydicom.dataelem import RawDataElement
    from pydicom.errors import InvalidDicomError
    from pydicom.valuerep import PersonName
except ImportError:
    sys.exit("conformance.py needs pydicom 3: pip install pydicom")

# Files where our reading differs from pydicom's on purpose. Key: path relative to the DIR given;
# value: (what we do, why).
KNOWN_DIFFERENCES = {
    "dicomdirtests/DICOMDIR-nooffset": (
        "error",
        "The last directory record item declares 248 bytes but the file ends 224 bytes later "
        "(the file was cut when tags were removed). pydicom reads up to the end of the file and "
        "returns a partial item without a word; we report the truncation, as a half-copied file "
        "must never look complete to the agent. Same policy as for rtplan_truncated.dcm, which "
        "pydicom's own reading marks as truncated.",
    ),
}

BINARY = {"OB", "OD", "OF", "OL", "OV", "OW", "UN"}
TEXT = {"AE", "AS", "CS", "DA", "DT", "TM", "LO", "LT", "PN", "SH", "ST", "UC", "UI", "UR", "UT"}
NUMBERS = {"US", "SS", "UL", "SL", "UV", "SV", "FL", "FD"}


# --- pydicom's reading, canonical form --------------------------------------------------------


def text_value(v, vr: str):
    s = str(v).rstrip(" \x00")
    return s.lstrip(" ") if vr == "AE" else s


def integer_string(v):
    if isinstance(v, int):
        return int(v)
    s = str(v).strip()
    if not s:
        return None
    try:
        return int(s, 10)
    except ValueError:
        return s


def decimal_string(v):
    if isinstance(v, float):
        return number(float(v))
    s = str(v).strip()
    if not s:
        return None
    try:
        return number(float(s))
    except ValueError:
        return s


def number(x: float):
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    return x


def one(v, vr: str):
    if v is None:
        return None
    if isinstance(v, (bytes, bytearray)):
        return {"length": len(v), "sha256": hashlib.sha256(bytes(v)).hexdigest()}
    if vr == "IS":
        return integer_string(v)
    if vr == "DS":
        return decimal_string(v)
    if vr == "AT":
        return f"{int(v):08X}"
    if vr in ("FL", "FD"):
        return number(float(v))
    if vr in NUMBERS:
        return int(v)
    return text_value(v, vr)


def value_of(elem, raw):
    vr = elem.VR
    if vr == "SQ":
        return [dataset(item) for item in (elem.value or [])]
    if isinstance(raw, RawDataElement) and raw.length == 0:
        return None
    v = elem.value
    if v is None:
        return None
    if vr in BINARY or isinstance(v, (bytes, bytearray)):
        data = raw.value if isinstance(raw, RawDataElement) and isinstance(raw.value, (bytes, bytearray)) else v
        if isinstance(data, (bytes, bytearray)):
            return one(bytes(data), vr) if data else None
    if isinstance(v, (list, tuple)) or type(v).__name__ == "MultiValue":
        values = [one(x, vr) for x in v]
        if vr in TEXT:
            values = ["" if x is None else x for x in values]
        if not values:
            return None
        return values if len(values) > 1 else (values[0] if values[0] != "" else None)
    out = one(v, vr)
    return None if out == "" else out


def dataset(ds) -> list:
    out = []
    for tag in sorted(ds.keys()):
        raw = ds.get_item(tag)
        elem = ds[tag]
        rec = {"tag": f"{int(tag):08X}", "vr": str(elem.VR)}
        if isinstance(raw, RawDataElement):
            rec["length"] = -1 if raw.length == 0xFFFFFFFF else int(raw.length)
            if raw.VR is not None and str(raw.VR) != str(elem.VR):
                rec["wire_vr"] = str(raw.VR)
        rec["value"] = value_of(elem, raw)
        out.append(rec)
    return out


def may_be_bare(path: str) -> bool:
    with open(path, "rb") as f:
        head = f.read(8)
    if len(head) < 8:
        return False
    return any(int.from_bytes(head[0:2], o) in (2, 8) and int.from_bytes(head[2:4], o) < 0x100 for o in ("little", "big"))


def runs_past_end(ds, path: str, syntax) -> bool:
    """pydicom silently returns a partial data set when a top-level element runs past the end."""
    if syntax == "1.2.840.10008.1.2.1.99":
        return False
    size = os.path.getsize(path)
    for tag in ds.keys():
        raw = ds.get_item(tag, keep_deferred=True)
        if isinstance(raw, RawDataElement) and raw.length != 0xFFFFFFFF and raw.value_tell is not None:
            if raw.value_tell + raw.length > size:
                return True
    return False


def pydicom_reading(path: str):
    """The canonical record, or None when pydicom gives no reading of the file."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            part10 = True
            try:
                ds = pydicom.dcmread(path, stop_before_pixels=True)
            except InvalidDicomError:
                if not may_be_bare(path):
                    return None
                ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
                part10 = False
                if not len(ds.keys()):
                    return None
            meta = getattr(ds, "file_meta", None)
            syntax = None
            if meta is not None and "TransferSyntaxUID" in meta:
                syntax = str(meta.TransferSyntaxUID).rstrip("\x00 ") or None
            if runs_past_end(ds, path, syntax):
                return None
            implicit, little = ds.original_encoding
            for tag in ds.keys():
                raw = ds.get_item(tag, keep_deferred=True)
                if isinstance(raw, RawDataElement):
                    implicit, little = raw.is_implicit_VR, raw.is_little_endian
                    break
            if syntax == "1.2.840.10008.1.2.1.99":
                encoding = "deflated-explicit-vr-le"
            else:
                encoding = ("implicit-vr-" if implicit else "explicit-vr-") + ("le" if little in (True, None) else "be")
            return {
                "status": "ok", "part10": part10, "transfer_syntax": syntax, "encoding": encoding,
                "meta": dataset(meta) if (part10 and meta is not None) else [], "dataset": dataset(ds),
            }
        except Exception as error:  # pydicom, or our rendering of its reading, failed
            global last_failure
            last_failure = f"{type(error).__name__}: {error}"[:300]
            return None


# Why the last pydicom_reading gave None (pydicom's or the renderer's exception), for the report.
last_failure = "pydicom reads it as a partial data set, or as nothing"

# The files pydicom gives no reading of, each for a reason: not DICOM at all, or truncated.
# Every other file must be compared: one pydicom (or our rendering of pydicom's reading) fails on
# is a failure of the run, never a file silently left out of the comparison.
PYDICOM_CANNOT_READ = {
    "README.txt": "text", "crayons.icc": "an ICC profile", "dicomdirtests/README.txt": "text",
    "dicomdirtests/TINY_ALPHA/README": "text", "no_meta.dcm": "neither Part 10 nor a bare data set pydicom recognises",
    "rtplan.dump": "text", "rtstruct.dump": "text", "test1.json": "JSON", "test_PN.json": "JSON", "zipMR.gz": "gzip",
    "FileInfo.txt": "text", "rtplan_truncated.dcm": "truncated: pydicom returns a partial data set",
}


# --- comparison -------------------------------------------------------------------------------


def scalar(v, sequence: bool):
    if sequence:
        return v
    if isinstance(v, list):
        if not v:
            return None
        if len(v) == 1:
            return scalar(v[0], False)
    return None if v == "" else v


def same_atom(a, b, vr: str) -> bool:
    if a in ("", None) and b in ("", None):
        return True
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if vr in ("FL", "OF"):
            return abs(float(a) - float(b)) <= 1e-7 * max(abs(float(a)), abs(float(b)), 1e-38)
        return float(a) == float(b) if (isinstance(a, float) or isinstance(b, float)) else a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.get("length") == b.get("length") and a.get("sha256") == b.get("sha256")
    return type(a) is type(b) and a == b


def differences(truth: list, ours: list, where: str) -> list[str]:
    found = []
    t = {e["tag"]: e for e in truth}
    o = {e["tag"]: e for e in ours}
    if len(o) != len(ours):
        found.append(f"{where}: duplicated tags in our reading")
    for tag in sorted(set(t) | set(o)):
        te, oe = t.get(tag), o.get(tag)
        here = f"{where} {tag}"
        if oe is None or te is None:
            found.append(f"{here}: only in {'pydicom' if oe is None else 'ours'}")
            continue
        if te["vr"] != oe["vr"] and te.get("wire_vr") != oe["vr"]:
            found.append(f"{here}: VR {te['vr']} (pydicom) != {oe['vr']} (ours)")
        if "length" in te and "length" in oe and te["length"] != oe["length"]:
            found.append(f"{here}: length {te['length']} != {oe['length']}")
        sq = te["vr"] == "SQ"
        tv, ov = scalar(te.get("value"), sq), scalar(oe.get("value"), sq)
        if sq:
            tv, ov = tv or [], ov or []
            if len(tv) != len(ov):
                found.append(f"{here}: {len(tv)} items (pydicom) != {len(ov)} (ours)")
            for i, (ti, oi) in enumerate(zip(tv, ov)):
                found += differences(ti, oi, f"{here}[{i}]")
        elif isinstance(tv, list) or isinstance(ov, list):
            if not (isinstance(tv, list) and isinstance(ov, list) and len(tv) == len(ov)
                    and all(same_atom(a, b, te["vr"]) for a, b in zip(tv, ov))):
                found.append(f"{here}: {json.dumps(tv)[:100]} != {json.dumps(ov)[:100]}")
        elif not same_atom(tv, ov, te["vr"]):
            found.append(f"{here}: {json.dumps(tv)[:100]} != {json.dumps(ov)[:100]}")
    return found


def compare_file(truth: dict, ours: dict) -> list[str]:
    if ours.get("status") != "ok":
        return [f"we could not read it: {ours.get('reason', '')[:200]}"]
    found = [f"{k}: {truth[k]} (pydicom) != {ours.get(k)} (ours)"
             for k in ("part10", "transfer_syntax", "encoding") if truth[k] != ours.get(k)]
    found += differences(truth["meta"], ours.get("meta", []), "meta")
    found += differences(truth["dataset"], ours.get("dataset", []), "dataset")
    return found


def files_under(root: str) -> list[tuple[str, str]]:
    out = []
    for folder, dirs, names in os.walk(root):
        dirs.sort()
        for name in names:
            path = os.path.join(folder, name)
            if os.path.isfile(path):
                out.append((path, os.path.relpath(path, root).replace(os.sep, "/")))
    return sorted(out, key=lambda x: x[1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--consort", required=True, help="the consort binary")
    ap.add_argument("--report", help="also write every line to this file")
    ap.add_argument("dirs", nargs="+")
    args = ap.parse_args()
    passed = failed = unreadable = total = 0
    lines = []

    def say(line: str) -> None:
        lines.append(line)
        print(line)

    for root in args.dirs:
        run = subprocess.run([args.consort, "dump", "--json", root], capture_output=True, text=True)
        if run.returncode < 0 or run.returncode not in (0, 1):
            say(f"FAIL {root}: consort dump ended with status {run.returncode}: {run.stderr[-500:]}")
            failed += 1
            continue
        ours = {}
        for line in run.stdout.splitlines():
            rec = json.loads(line)
            ours[rec["file"]] = rec
        for path, name in files_under(root):
            total += 1
            rec = ours.get(name)
            if rec is None:
                say(f"FAIL {root}/{name}: no record from consort dump (a crash?)")
                failed += 1
                continue
            truth = pydicom_reading(path)
            known = KNOWN_DIFFERENCES.get(name)
            if known is not None:
                expected, why = known
                if rec.get("status") == expected:
                    say(f"PASS {root}/{name} (known difference: {expected}; {why[:80]}...)")
                    passed += 1
                else:
                    say(f"FAIL {root}/{name}: expected {expected} (known difference), got {rec.get('status')}")
                    failed += 1
                continue
            if truth is None:
                if name not in PYDICOM_CANNOT_READ:
                    say(f"FAIL {root}/{name}: no reading from pydicom to compare with ({last_failure}); "
                        "if pydicom really cannot read it, list it in PYDICOM_CANNOT_READ with the reason")
                    failed += 1
                    continue
                unreadable += 1
                outcome = "a reading" if rec.get("status") == "ok" else f"error: {rec.get('reason', '')[:100]}"
                say(f"NOTRUTH {root}/{name}: pydicom cannot read it ({PYDICOM_CANNOT_READ[name]}); we give {outcome}")
                continue
            diffs = compare_file(truth, rec)
            if diffs:
                failed += 1
                say(f"FAIL {root}/{name}: {len(diffs)} differences")
                for d in diffs[:8]:
                    say(f"    {d}")
            else:
                passed += 1
                say(f"PASS {root}/{name}")
    say(f"conformance: {unreadable} files pydicom cannot read (we gave a reading or a clear error for each)")
    say(f"conformance: {passed + unreadable} files of {total} accounted for")
    say(f"{passed} passed, {failed} failed")
    if args.report:
        with open(args.report, "w") as f:
            f.write("\n".join(lines) + "\n")
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
