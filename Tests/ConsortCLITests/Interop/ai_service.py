"""A test AI service's answer (issue 29): a Structured Report on a study it was sent, posted back
to the trust by STOW-RS with the service's own certificate — pydicom builds it, Python's own
TLS client sends it, so neither side of the exchange is Consort's code.

    ai_service.py STUDY_FOLDER URL CERT KEY CA [--other-study] [--own-study UID] [--patient ID]

STUDY_FOLDER: the instances of one study as the service received them. The report copies the
study's patient module and Study Instance UID, and lists every instance in its Current
Requested Procedure Evidence Sequence, as IHE AI Results asks. `--other-study`: the same report
but in a new study that nothing names (a result for a study never sent). `--patient ID`: the
report names that Patient ID whatever the study said. `--own-study UID`: the report in a study of
its own (UID), naming the study it answers in its evidence (a service that files its results
apart). Prints one JSON line:
{"status": HTTP status, "sop": the report's SOP Instance UID, "study": its study, "patient": its
Patient ID, "body": the answer}.
"""

import glob
import io
import json
import os
import ssl
import sys
import uuid
import http.client
import urllib.parse

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"


def report(folder, other_study, patient=None, own_study=None):
    sources = [pydicom.dcmread(path, stop_before_pixels=True) for path in sorted(glob.glob(os.path.join(folder, "*.dcm")))]
    if not sources:
        raise SystemExit(f"no instances in {folder}")
    first = sources[0]
    sr = Dataset()
    for keyword in ["PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex",
                    "StudyDate", "StudyTime", "AccessionNumber", "ReferringPhysicianName", "StudyID"]:
        if keyword in first:
            setattr(sr, keyword, getattr(first, keyword))
    if patient is not None:
        sr.PatientID = patient
    sr.StudyInstanceUID = own_study or (generate_uid() if other_study else first.StudyInstanceUID)
    sr.SOPClassUID = BASIC_TEXT_SR
    sr.SOPInstanceUID = generate_uid()
    sr.SeriesInstanceUID = generate_uid()
    sr.Modality = "SR"
    sr.SeriesNumber = 990
    sr.InstanceNumber = 1
    sr.Manufacturer = "Consort test AI"
    sr.ContentDate = "20261207"
    sr.ContentTime = "120000"
    sr.CompletionFlag = "COMPLETE"
    sr.VerificationFlag = "UNVERIFIED"
    sr.ValueType = "CONTAINER"
    sr.ContinuityOfContent = "SEPARATE"
    title = Dataset()
    title.CodeValue, title.CodingSchemeDesignator, title.CodeMeaning = "18748-4", "LN", "Diagnostic imaging report"
    sr.ConceptNameCodeSequence = Sequence([title])
    finding = Dataset()
    finding.RelationshipType, finding.ValueType = "CONTAINS", "TEXT"
    name = Dataset()
    name.CodeValue, name.CodingSchemeDesignator, name.CodeMeaning = "121071", "DCM", "Finding"
    finding.ConceptNameCodeSequence = Sequence([name])
    finding.TextValue = "No urgent finding (test AI)"
    sr.ContentSequence = Sequence([finding])
    # The evidence: every instance of the study sent, by series.
    series = {}
    for source in sources:
        item = Dataset()
        item.ReferencedSOPClassUID = source.SOPClassUID
        item.ReferencedSOPInstanceUID = source.SOPInstanceUID
        series.setdefault(source.SeriesInstanceUID, []).append(item)
    series_items = []
    for uid, instances in series.items():
        entry = Dataset()
        entry.SeriesInstanceUID = uid
        entry.ReferencedSOPSequence = Sequence(instances)
        series_items.append(entry)
    evidence = Dataset()
    evidence.StudyInstanceUID = first.StudyInstanceUID
    evidence.ReferencedSeriesSequence = Sequence(series_items)
    if not other_study:
        sr.CurrentRequestedProcedureEvidenceSequence = Sequence([evidence])
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sr.SOPClassUID
    meta.MediaStorageSOPInstanceUID = sr.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    sr.file_meta = meta
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, sr, enforce_file_format=True)
    return sr, buffer.getvalue()


def post(url, body, cert, key, ca):
    boundary = uuid.uuid4().hex
    payload = (f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n").encode() + body + f"\r\n--{boundary}--\r\n".encode()
    context = ssl.create_default_context(cafile=ca)
    context.load_cert_chain(cert, key)
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPSConnection(parts.hostname, parts.port, context=context, timeout=30)
    connection.request("POST", parts.path, body=payload, headers={
        "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
        "Accept": "application/dicom+json"})
    answer = connection.getresponse()
    return answer.status, answer.read().decode("utf-8", "replace")


def main():
    folder, url, cert, key, ca = sys.argv[1:6]
    options = sys.argv[6:]
    patient = options[options.index("--patient") + 1] if "--patient" in options else None
    own_study = options[options.index("--own-study") + 1] if "--own-study" in options else None
    sr, body = report(folder, "--other-study" in options, patient, own_study)
    status, text = post(url, body, cert, key, ca)
    print(json.dumps({"status": status, "sop": sr.SOPInstanceUID, "study": sr.StudyInstanceUID, "patient": str(sr.get("PatientID", "")), "body": text}))


if __name__ == "__main__":
    main()
