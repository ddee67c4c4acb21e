#!/usr/bin/env python3
"""Make a benchmark corpus of DICOM files with realistic CT headers (the conformance fixtures'
header plus a scanner's acquisition attributes and a vendor private block: ~160 elements, ~5 KB,
nested sequences), in the folder layout of an archive.

    make_corpus.py OUT_DIR --files N [--pixels ROWSxCOLS]

Transfer syntaxes are mixed as in a PACS export: 80% explicit VR little endian, 15% implicit,
5% JPEG baseline (encapsulated stand-in fragments of the same size). Deterministic.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "ConsortCLITests", "Conformance"))
import fixtures  # noqa: E402  (the suite's own header template)
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEGBaseline8Bit  # noqa: E402


def ct_acquisition(ds, n: int) -> None:
    """What a CT scanner adds to the template: acquisition and equipment attributes, image
    references and a vendor's private block, for the ~150 elements of a real CT header."""
    for keyword, value in [
        ("Manufacturer", "CONSORT SYNTHETIC"), ("ManufacturerModelName", "Model 64"),
        ("SoftwareVersions", "1.2.3"), ("DeviceSerialNumber", "SN0001"), ("ProtocolName", "HEAD ROUTINE"),
        ("SeriesDescription", "AXIAL 1.25 STD"), ("ConvolutionKernel", "STANDARD"), ("PatientPosition", "HFS"),
        ("DataCollectionDiameter", "500"), ("ReconstructionDiameter", "250"), ("DistanceSourceToDetector", "949"),
        ("DistanceSourceToPatient", "541"), ("GantryDetectorTilt", "0"), ("TableHeight", "150.5"),
        ("RotationDirection", "CW"), ("ExposureTime", "1000"), ("XRayTubeCurrent", "300"), ("Exposure", "300"),
        ("FilterType", "BODY FILTER"), ("GeneratorPower", "36000"), ("FocalSpots", "0.7"),
        ("SpiralPitchFactor", 0.516), ("CTDIvol", 55.2), ("AcquisitionNumber", "1"),
        ("PositionReferenceIndicator", "SN"), ("SliceLocation", f"{n * 1.25:.2f}"), ("PixelSpacing", ["0.488", "0.488"]),
        ("ContentDate", "20240131"), ("ContentTime", "101512"), ("AcquisitionDate", "20240131"),
        ("AcquisitionTime", "101509"), ("SeriesDate", "20240131"), ("SeriesTime", "101501"),
        ("OperatorsName", "Radiographer^A"), ("PerformingPhysicianName", ""), ("RequestingPhysician", "Doctor^B"),
        ("PerformedProcedureStepStartDate", "20240131"), ("PerformedProcedureStepStartTime", "101000"),
        ("PerformedProcedureStepID", "PPS1"), ("PerformedProcedureStepDescription", "CT HEAD"),
        ("StationName", "CTSCAN1"), ("InstitutionalDepartmentName", "Radiology"),
        ("InstitutionAddress", "Egerton Road, Guildford"), ("LossyImageCompression", "00"), ("BurnedInAnnotation", "NO"),
        ("RescaleType", "HU"), ("PatientIdentityRemoved", "NO"), ("TimezoneOffsetFromUTC", "+0000"),
    ]:
        setattr(ds, keyword, value)
    refs = []
    for k in range(3):
        item = fixtures.Dataset()
        item.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        item.ReferencedSOPInstanceUID = fixtures.uid(7, n, k)
        refs.append(item)
    ds.ReferencedImageSequence = fixtures.Sequence(refs)
    ds.add_new(0x00430010, "LO", "VENDOR_PARM_1")
    for k in range(1, 31):
        vr, value = [("SS", k), ("DS", f"{k}.5"), ("LO", f"parameter {k}"), ("US", k), ("IS", str(k))][k % 5]
        ds.add_new(0x00431000 | k, vr, value)
    ds.add_new(0x00431040, "OB", bytes(range(256)) * 4)  # a vendor blob, as scanners send


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out")
    ap.add_argument("--files", type=int, required=True)
    ap.add_argument("--pixels", default="64x64", help="ROWSxCOLS of 16-bit pixels (default 64x64)")
    args = ap.parse_args()
    rows, cols = (int(x) for x in args.pixels.lower().split("x"))
    pixels = bytes((i * 7) & 0xFF for i in range(rows * cols * 2))
    per_series = 100
    for n in range(args.files):
        series = n // per_series
        folder = os.path.join(args.out, f"study{series // 3:05d}", f"series{series:05d}")
        os.makedirs(folder, exist_ok=True)
        ds = fixtures.base_dataset(n + 1)
        ct_acquisition(ds, n + 1)
        ds.Rows, ds.Columns = rows, cols
        ds.SeriesInstanceUID = fixtures.uid(2, series)
        ds.StudyInstanceUID = fixtures.uid(1, series // 3)
        kind = series % 20
        if kind == 0:
            syntax = JPEGBaseline8Bit
            fixtures.encapsulated(ds, [b"\xff\xd8" + pixels[: len(pixels) // 4] + b"\xff\xd9"], True)
        else:
            syntax = ImplicitVRLittleEndian if kind < 4 else ExplicitVRLittleEndian
            ds.PixelData = pixels
        fixtures.save(ds, os.path.join(folder, f"IM{n % per_series:05d}.dcm"), syntax)
    print(f"make_corpus: {args.files} files ({rows}x{cols}) in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
