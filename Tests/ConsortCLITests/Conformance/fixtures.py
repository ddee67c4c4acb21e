#!/usr/bin/env python3
"""Make the conformance fixtures: small DICOM files covering every transfer syntax the reader
supports and the quirks found in real archives. Deterministic: the same files every run.

    fixtures.py OUT_DIR

Most files are written by pydicom; the quirks pydicom will not write (odd-length values, an
undefined-length UN holding an implicit VR sequence, a data set whose encoding contradicts its
meta, bare data sets) are assembled byte by byte with the small encoder below. README.md beside
this file lists every fixture, its transfer syntax and what it is for.
"""

from __future__ import annotations

import io
import os
import struct
import sys

try:
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.sequence import Sequence
    from pydicom.uid import (DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian, ExplicitVRLittleEndian,
                             ImplicitVRLittleEndian, JPEG2000Lossless, JPEGBaseline8Bit, JPEGLosslessSV1,
                             RLELossless)
except ImportError:
    sys.exit("fixtures.py needs pydicom 3 (pip install pydicom)")

ROOT = "1.2.826.0.1.3680043.10.1234"  # a test UID root; nothing here identifies anyone


def uid(*parts: int) -> str:
    return ROOT + "." + ".".join(str(p) for p in parts)


def base_dataset(n: int, charset: str | None = None, name: str = "Test^Patient") -> Dataset:
    """A header with the attributes a PACS export carries, nested sequences, private blocks and
    one element of every VR."""
    ds = Dataset()
    if charset:
        ds.SpecificCharacterSet = charset
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.SOPInstanceUID = uid(3, n)
    ds.StudyDate = "20240131"
    ds.StudyTime = "101500.123456"
    ds.AcquisitionDateTime = "20240131101500.123456+0000"
    ds.AccessionNumber = f"ACC{n:05d}"
    ds.Modality = "CT"
    ds.InstitutionName = "Royal Surrey County Hospital"
    ds.ReferringPhysicianName = ""
    ds.StationName = " CT01"  # a leading space, kept
    ds.StudyDescription = "CT HEAD"
    ds.PatientName = name
    ds.PatientID = f"RSCH{n:06d}"
    ds.IssuerOfPatientID = "RSCH"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "F"
    ds.PatientAge = "054Y"
    ds.PatientWeight = "72.5"
    ds.OtherPatientIDsSequence = Sequence([_other_id("9434765919", "NHS"), _other_id(f"H{n}", "RSCH")])
    ds.BodyPartExamined = "HEAD"
    ds.SliceThickness = "1.25"
    ds.KVP = "120"
    ds.StudyInstanceUID = uid(1, n // 10)
    ds.SeriesInstanceUID = uid(2, n // 5)
    ds.SeriesNumber = "3"
    ds.InstanceNumber = str(n)
    ds.ImagePositionPatient = ["-125.0", "-125.0", f"{n * 1.25:.2f}"]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.FrameOfReferenceUID = uid(4, 1)
    ds.ImageComments = "Line one\r\nLine two"
    ds.ReferencedStudySequence = Sequence([_referenced(uid(1, 7)), _referenced(uid(1, 8))])
    proc = Dataset()
    proc.CodeValue = "CTHEAD"
    proc.CodingSchemeDesignator = "L"
    proc.CodeMeaning = "CT Head without contrast"
    request = Dataset()
    request.RequestedProcedureID = "RP1"
    request.ScheduledProcedureStepID = "SPS1"
    request.ScheduledProtocolCodeSequence = Sequence([proc])  # three levels deep
    ds.RequestAttributesSequence = Sequence([request])
    ds.ProcedureCodeSequence = Sequence([proc])
    ds.ReferencedImageSequence = Sequence([])  # empty sequence
    # Every VR once more, with multiple values where the VR allows.
    ds.add_new(0x00080054, "AE", ["  PACS1 ", "AI_NODE"])
    ds.add_new(0x00090010, "LO", "CONSORT TEST")  # private creator of block 10
    ds.add_new(0x00091011, "AT", [0x00100010, 0x7FE00010])
    ds.add_new(0x00091012, "FL", [1.5, -0.25, 3.0e38])
    ds.add_new(0x00091013, "FD", [2.718281828459045, -1e-300])
    ds.add_new(0x00091014, "SL", [-7, 2147483647])
    ds.add_new(0x00091015, "SS", [-2, 32767])
    ds.add_new(0x00091016, "UL", [0, 4294967295])
    ds.add_new(0x00091017, "US", [1, 65535])
    ds.add_new(0x00091018, "OB", b"\x00\x01\x02\x03")
    ds.add_new(0x00091019, "OW", b"\x01\x00\x02\x00")
    ds.add_new(0x0009101A, "OF", struct.pack("<2f", 1.0, 2.0))
    ds.add_new(0x0009101B, "OD", struct.pack("<d", 1.0))
    ds.add_new(0x0009101C, "OL", struct.pack("<I", 7))
    ds.add_new(0x0009101D, "UC", "Unlimited characters value")
    ds.add_new(0x0009101E, "UR", "https://example.org/consort")
    ds.add_new(0x0009101F, "UT", "Unlimited text, with \\ a backslash kept")
    ds.add_new(0x00091020, "ST", "Short text")
    ds.add_new(0x00091021, "LT", "Long text")
    ds.add_new(0x00091022, "SH", ["A", "", "C"])  # an empty value between two
    ds.add_new(0x00091023, "DS", ["1.5", " 2", "1e3"])
    ds.add_new(0x00091024, "IS", ["-4", "+5", "0"])
    ds.add_new(0x00091025, "TM", "235959")
    ds.add_new(0x00091026, "DT", "2024")
    ds.add_new(0x00091027, "SV", [-9007199254740993, 5])
    ds.add_new(0x00091028, "UV", [18446744073709551615, 1])
    ds.add_new(0x00091029, "OV", struct.pack("<Q", 42))
    ds.add_new(0x0009102A, "UN", b"\xde\xad\xbe\xef")
    ds.add_new(0x0009102B, "CS", "")
    ds.Rows = 4
    ds.Columns = 4
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.SmallestImagePixelValue = 0
    ds.LargestImagePixelValue = 4095
    ds.WindowCenter = "40"
    ds.WindowWidth = "400"
    ds.RescaleIntercept = "-1024"
    ds.RescaleSlope = "1"
    ds.PixelData = bytes(range(32))
    return ds


def _other_id(value: str, issuer: str) -> Dataset:
    item = Dataset()
    item.PatientID = value
    item.IssuerOfPatientID = issuer
    item.TypeOfPatientID = "TEXT"
    return item


def _referenced(study: str) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"
    item.ReferencedSOPInstanceUID = study
    return item


def save(ds: Dataset, path: str, syntax: str) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = syntax
    meta.ImplementationClassUID = uid(99)
    ds.file_meta = meta
    ds.save_as(path, enforce_file_format=True)


def encapsulated(ds: Dataset, frames: list[bytes], bot: bool) -> Dataset:
    ds.PixelData = encapsulate(frames, has_bot=bot)
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    ds.add_new(0xFFFCFFFC, "OB", b"\x00" * 8)  # trailing padding after pixel data
    return ds


# --- a tiny raw encoder for what pydicom will not write ---------------------------------------


def element(group: int, elem: int, vr: str, value: bytes, explicit: bool = True, little: bool = True,
            undefined: bool = False) -> bytes:
    e = "<" if little else ">"
    length = 0xFFFFFFFF if undefined else len(value)
    head = struct.pack(e + "HH", group, elem)
    if not explicit:
        return head + struct.pack(e + "I", length) + value
    if vr in ("OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"):
        return head + vr.encode() + b"\0\0" + struct.pack(e + "I", length) + value
    return head + vr.encode() + struct.pack(e + "H", length) + value


def item(content: bytes, undefined: bool = True, little: bool = True) -> bytes:
    e = "<" if little else ">"
    if undefined:
        return struct.pack(e + "HHI", 0xFFFE, 0xE000, 0xFFFFFFFF) + content + struct.pack(e + "HHI", 0xFFFE, 0xE00D, 0)
    return struct.pack(e + "HHI", 0xFFFE, 0xE000, len(content)) + content


SEQ_END = struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)


def part10(meta_syntax: str, data: bytes, sop: str) -> bytes:
    meta = b"".join([
        element(0x0002, 0x0001, "OB", b"\x00\x01"),
        element(0x0002, 0x0002, "UI", _ui("1.2.840.10008.5.1.4.1.1.7")),
        element(0x0002, 0x0003, "UI", _ui(sop)),
        element(0x0002, 0x0010, "UI", _ui(meta_syntax)),
        element(0x0002, 0x0012, "UI", _ui(uid(99))),
    ])
    return b"\0" * 128 + b"DICM" + element(0x0002, 0x0000, "UL", struct.pack("<I", len(meta))) + meta + data


def _ui(text: str) -> bytes:
    raw = text.encode()
    return raw + b"\0" if len(raw) % 2 else raw


def quirk_files(out: str) -> None:
    sop = uid(5, 1)
    # 1. Meta says explicit VR little endian, the data set is implicit VR (pydicom's SC_rgb_jpeg).
    data = b"".join([
        element(0x0008, 0x0016, "UI", _ui("1.2.840.10008.5.1.4.1.1.7"), explicit=False),
        element(0x0008, 0x0018, "UI", _ui(sop), explicit=False),
        element(0x0010, 0x0010, "PN", b"Mismatch^Meta", explicit=False),
        element(0x0028, 0x0103, "US", struct.pack("<H", 1), explicit=False),
        element(0x0028, 0x0106, "US", struct.pack("<h", -100), explicit=False),  # US or SS → SS
    ])
    write(out, "quirk_meta_explicit_data_implicit.dcm", part10(ExplicitVRLittleEndian, data, sop))

    # 2. Odd-length values without a pad byte, and an undefined-length UN private sequence
    #    holding implicit VR items (CP-246), and a UN whose tag the dictionary knows.
    inner = element(0x0011, 0x0010, "LO", b"INNER", explicit=False) + element(0x0011, 0x1001, "DS", b"1.5 ", explicit=False)
    nested = element(0x0008, 0x1150, "UI", _ui("1.2.840.10008.5.1.4.1.1.2"), explicit=False)
    nested_seq = element(0x0008, 0x1140, "SQ", item(nested) + SEQ_END, explicit=False, undefined=True)
    data = b"".join([
        element(0x0008, 0x0016, "UI", _ui("1.2.840.10008.5.1.4.1.1.7")),
        element(0x0008, 0x0018, "UI", _ui(sop)),
        element(0x0008, 0x1010, "SH", b"CT1"),  # odd length, no pad
        element(0x0010, 0x0010, "PN", b"Odd^Length^^^"),
        element(0x0010, 0x0020, "UN", b"PID123"),  # known tag as UN → LO
        element(0x0019, 0x0010, "LO", b"RELAYED "),
        element(0x0019, 0x1001, "UN", item(inner) + item(nested_seq, undefined=False) + SEQ_END, undefined=True),
        element(0x0020, 0x000D, "UI", _ui(uid(1, 99))),
    ])
    write(out, "quirk_odd_length_and_un_sequence.dcm", part10(ExplicitVRLittleEndian, data, sop))

    # 3. Bare data sets, no preamble or meta, in three encodings.
    for name, explicit, little in (("bare_implicit_le.dcm", False, True), ("bare_explicit_le.dcm", True, True)):
        data = b"".join([
            element(0x0008, 0x0016, "UI", _ui("1.2.840.10008.5.1.4.1.1.7"), explicit, little),
            element(0x0008, 0x0018, "UI", _ui(uid(6, int(explicit))), explicit, little),
            element(0x0008, 0x0060, "CS", b"OT", explicit, little),
            element(0x0010, 0x0010, "PN", b"Bare^Data^Set ", explicit, little),
            element(0x0028, 0x0010, "US", struct.pack("<H" if little else ">H", 2), explicit, little),
        ])
        write(out, name, data)

    # 4. Deep but legal nesting: 12 levels of undefined-length sequences.
    content = element(0x0008, 0x0100, "SH", b"LEAF")
    for _ in range(12):
        content = element(0x0040, 0xA730, "SQ", item(content) + SEQ_END, undefined=True)
    data = element(0x0008, 0x0016, "UI", _ui("1.2.840.10008.5.1.4.1.1.88.11")) + element(0x0008, 0x0018, "UI", _ui(sop)) + content
    write(out, "quirk_deep_nesting.dcm", part10(ExplicitVRLittleEndian, data, sop))

    # 5. Group length elements everywhere and an empty item.
    data = b"".join([
        element(0x0008, 0x0000, "UL", struct.pack("<I", 0)),
        element(0x0008, 0x0016, "UI", _ui("1.2.840.10008.5.1.4.1.1.7")),
        element(0x0008, 0x0018, "UI", _ui(sop)),
        element(0x0008, 0x1115, "SQ", item(b"") + item(b"", undefined=False) + SEQ_END, undefined=True),
        element(0x0010, 0x0000, "UL", struct.pack("<I", 0)),
    ])
    write(out, "quirk_group_lengths_empty_items.dcm", part10(ExplicitVRLittleEndian, data, sop))


def write(out: str, name: str, data: bytes) -> None:
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)


CHARSETS = [
    ("ISO_IR 100", "Buc^Jérôme"),
    ("ISO_IR 192", "Wang^XiaoDong=王^小東"),
    ("ISO_IR 144", "Люкceмбypг"),
    ("ISO_IR 126", "Διονυσιος"),
    ("ISO_IR 138", "שרון^דבורה"),
    ("ISO_IR 127", "قباني^لنزار"),
    ("ISO_IR 101", "Dvořák^Antonín"),
    ("ISO_IR 148", "Öztürk^Çağrı"),
    ("GB18030", "Wang^XiaoDong=王^小东"),
    (["", "ISO 2022 IR 87"], "Yamada^Tarou=山田^太郎=やまだ^たろう"),
    (["ISO 2022 IR 13", "ISO 2022 IR 87"], "ﾔﾏﾀﾞ^ﾀﾛｳ=山田^太郎=やまだ^たろう"),
    (["", "ISO 2022 IR 149"], "Hong^Gildong=洪^吉洞=홍^길동"),
]


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    n = 0
    plain = [
        ("explicit_le.dcm", ExplicitVRLittleEndian),
        ("implicit_le.dcm", ImplicitVRLittleEndian),
        ("explicit_be.dcm", ExplicitVRBigEndian),
        ("deflated.dcm", DeflatedExplicitVRLittleEndian),
    ]
    for name, syntax in plain:
        n += 1
        save(base_dataset(n), os.path.join(out, name), syntax)
    # Implicit VR with signed pixels: "US or SS" elements read as SS.
    n += 1
    ds = base_dataset(n)
    ds.PixelRepresentation = 1
    ds.SmallestImagePixelValue = -1024
    ds.LargestImagePixelValue = 3071
    save(ds, os.path.join(out, "implicit_le_signed.dcm"), ImplicitVRLittleEndian)
    # Encapsulated syntaxes: fragments are stand-ins (the reader does not decode pixels).
    for name, syntax, frames, bot in (
        ("jpeg_baseline_bot.dcm", JPEGBaseline8Bit, [b"\xff\xd8" + bytes(50) + b"\xff\xd9"] * 2, True),
        ("jpeg_lossless_nobot.dcm", JPEGLosslessSV1, [b"\xff\xd8" + bytes(33) + b"\xff\xd9"], False),
        ("rle.dcm", RLELossless, [bytes(64)], True),
        ("jpeg2000.dcm", JPEG2000Lossless, [b"\xff\x4f" + bytes(100)], False),
    ):
        n += 1
        save(encapsulated(base_dataset(n), frames, bot), os.path.join(out, name), syntax)
    for charset, name in CHARSETS:
        n += 1
        label = (charset if isinstance(charset, str) else "_".join(c or "default" for c in charset))
        label = label.replace(" ", "_").replace("/", "_")
        ds = base_dataset(n, charset, name)
        ds.StudyDescription = name.split("=")[-1].replace("^", " ")
        save(ds, os.path.join(out, f"charset_{label}.dcm"), ExplicitVRLittleEndian)
    quirk_files(out)
    print(f"fixtures: wrote {len(os.listdir(out))} files to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
