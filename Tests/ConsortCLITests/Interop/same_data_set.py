#!/usr/bin/env python3
"""pydicom's word on whether two DICOM files hold the same data set, whatever their transfer
syntaxes: every element's tag and value alike (sequences item by item; pixel data byte for byte),
group lengths aside. Prints the differences and exits 1 if any; prints each file's transfer syntax.
Usage: same_data_set.py A B [--except GGGGEEEE ...]   (top-level elements left out of the comparison)
"""
import sys

import pydicom


def elements(ds, prefix="", skip=frozenset()):
    out = {}
    for element in ds:
        if element.tag.element == 0 or (not prefix and f"{element.tag:08X}" in skip):
            continue
        key = prefix + str(element.tag)
        if element.VR == "SQ":
            out[key] = len(element.value)
            for index, item in enumerate(element.value):
                out.update(elements(item, f"{key}[{index}]"))
        else:
            value = element.value
            out[key] = bytes(value) if isinstance(value, (bytes, bytearray)) else str(value)
    return out


skip = frozenset(tag.upper() for tag in sys.argv[sys.argv.index("--except") + 1:]) if "--except" in sys.argv else frozenset()
a, b = (pydicom.dcmread(path) for path in sys.argv[1:3])
print(a.file_meta.TransferSyntaxUID, b.file_meta.TransferSyntaxUID)
ea, eb = elements(a, skip=skip), elements(b, skip=skip)
differences = [key for key in sorted(set(ea) | set(eb)) if ea.get(key) != eb.get(key)]
for key in differences[:20]:
    print("differs:", key, repr(ea.get(key))[:80], repr(eb.get(key))[:80])
sys.exit(1 if differences or not ea else 0)
