#!/usr/bin/env python3
"""Make a benchmark corpus of DICOM files with realistic headers (the conformance fixtures'
header: ~80 elements, nested sequences, private blocks), in the folder layout of an archive.

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
