"""An independent check of de-identified files (issue 29): for each pair ORIGINAL DEIDENTIFIED,
no attribute whose Basic Profile action in PS3.15 Table E.1-1 is X (remove), Z, D, U or one of
their combinations survives with its original value, at the top level or inside sequences; the
pixel data is byte-identical; and across all the pairs every original UID maps to one new UID
and no two to the same one.

    check_deidentified.py TABLE_JSON ORIGINAL DEIDENTIFIED [ORIGINAL DEIDENTIFIED ...]

TABLE_JSON: the standard's table as `dicom-standard` 0.1.0 (PyPI) carries it
(confidentiality_profile_attributes.json). pydicom reads the files and names the attributes;
nothing of Consort's code is used. Prints one JSON line: {"pairs", "checked", "problems": [...]}.
Exit status 1 when there is a problem.
"""
import json
import re
import sys

import pydicom
from pydicom.datadict import keyword_for_tag

table_path, files = sys.argv[1], sys.argv[2:]
table = json.load(open(table_path))
exact, private_row, curves, overlay_comments, overlay_data = {}, None, None, None, None
for row in table:
    text = row["tag"].upper()
    if text.startswith("(GGGG,EEEE)"):
        private_row = row["basicProfile"]
    elif text == "(50XX,XXXX)":
        curves = row["basicProfile"]
    elif text == "(60XX,4000)":
        overlay_comments = row["basicProfile"]
    elif text == "(60XX,3000)":
        overlay_data = row["basicProfile"]
    else:
        group, element = re.fullmatch(r"\(([0-9A-F]{4}),([0-9A-F]{4})\)", text).groups()
        exact[int(group + element, 16)] = row["basicProfile"]


def basic_action(tag):
    if int(tag) in exact:
        return exact[int(tag)]
    if tag.group % 2 == 1:
        return private_row
    if tag.group & 0xFF00 == 0x5000:
        return curves
    if tag.group & 0xFF00 == 0x6000 and tag.element == 0x4000:
        return overlay_comments
    if tag.group & 0xFF00 == 0x6000 and tag.element == 0x3000:
        return overlay_data
    return None


problems, uid_map, checked = [], {}, 0


def values(elem):
    value = elem.value
    if value is None:
        return []
    if isinstance(value, (list, pydicom.multival.MultiValue)):
        return [str(v) for v in value if str(v) != ""]
    text = str(value)
    return [text] if text != "" else []


def walk(original, deidentified, path, name):
    global checked
    for elem in original:
        tag = elem.tag
        if tag.group == 0x0002:
            continue
        where = f"{name}: {path}{keyword_for_tag(tag) or str(tag)}"
        action = basic_action(tag)
        other = deidentified.get(tag) if deidentified is not None else None
        if elem.VR == "SQ":
            if action in ("X", "Z", "D", "X/Z", "X/D", "X/Z/D", "Z/D") and other is not None and len(other.value) > 0:
                problems.append(f"{where}: a sequence the profile removes, empties or replaces ({action}) still has {len(other.value)} items")
            if other is not None:
                for index, item in enumerate(elem.value):
                    counterpart = other.value[index] if index < len(other.value) else None
                    if counterpart is not None:
                        walk(item, counterpart, f"{path}{keyword_for_tag(tag) or str(tag)}[{index}].", name)
            continue
        if action is None or action == "K":
            continue
        checked += 1
        before = values(elem)
        if not before:
            continue
        if other is None:
            continue  # removed: nothing survives
        after = values(other)
        if action == "X":
            problems.append(f"{where}: to be removed, still there ({after[:2]})")
        elif action == "Z" and after:
            problems.append(f"{where}: to be emptied, holds {after[:2]}")
        elif set(before) & set(after):
            problems.append(f"{where}: action {action}, the original value survives ({sorted(set(before) & set(after))[:2]})")
        if "U" in action and elem.VR == "UI":
            for old, new in zip(before, after):
                if uid_map.setdefault(old, new) != new:
                    problems.append(f"{where}: {old} became {new} here and {uid_map[old]} elsewhere")


def pixel_bytes(dataset):
    """The pixel data as little-endian bytes: a big-endian file written little-endian holds
    the same pixels with each 16- or 32-bit word's bytes the other way round."""
    data = bytes(dataset.PixelData)
    little = dataset.original_encoding[1] if dataset.original_encoding[1] is not None else True
    width = int(dataset.get("BitsAllocated", 8)) // 8
    if little or width < 2 or dataset.file_meta.get("TransferSyntaxUID", "") not in ("1.2.840.10008.1.2.2",):
        return data
    return b"".join(data[i:i + width][::-1] for i in range(0, len(data), width))


pairs = list(zip(files[0::2], files[1::2]))
for original_path, deidentified_path in pairs:
    original = pydicom.dcmread(original_path, force=True)
    deidentified = pydicom.dcmread(deidentified_path, force=True)
    walk(original, deidentified, "", original_path.split("/")[-1])
    if "PixelData" in original:
        if "PixelData" not in deidentified or pixel_bytes(original) != pixel_bytes(deidentified):
            problems.append(f"{original_path}: the pixel data changed")
    # Anywhere in the file's bytes, not only where the attributes were: the patient's name,
    # numbers and birth date, and the instance's own UIDs.
    raw = open(deidentified_path, "rb").read()
    needles = []
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "AccessionNumber"):
        value = str(original.get(keyword, "") or "").strip()
        if len(value) >= 4:
            needles.append((keyword, value))
    for keyword, value in needles:
        if value.encode() in raw:
            problems.append(f"{deidentified_path}: the original {keyword} ({value}) is in the file's bytes")
    for tag in (0x00020016, 0x00020017, 0x00020018, 0x00020100, 0x00020102):
        if tag in deidentified.file_meta:
            problems.append(f"{deidentified_path}: the file meta keeps {pydicom.tag.Tag(tag)}")
    if deidentified.get("PatientIdentityRemoved") != "YES":
        problems.append(f"{deidentified_path}: Patient Identity Removed is not YES")
reverse = {}
for old, new in uid_map.items():
    if reverse.setdefault(new, old) != old:
        problems.append(f"two UIDs, {old} and {reverse[new]}, both became {new}")
print(json.dumps({"pairs": len(pairs), "checked": checked, "uids": len(uid_map), "problems": problems}))
sys.exit(1 if problems else 0)
