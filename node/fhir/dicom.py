"""DICOM: streamed upload (stored encrypted as a Binary record), streamed download, and a
de-identified copy per the DICOM PS3.15 Basic Application Level Confidentiality Profile.

Memory stays flat in the file size: the upload is spooled to an owner-only temporary file
(hashing as it goes), pydicom reads only the header (`stop_before_pixels`), the record store
encrypts in chunks; downloads decrypt to an owner-only temporary file that is sent in chunks
and deleted. De-identification rewrites the header with pydicom and copies the pixel data
element and everything after it byte for byte.

Routes: `POST /dicom` (body: a DICOM Part 10 file; `X-Medledger-Patient: 0x<account>`),
`GET /dicom/{id}` (original), `GET /dicom/{id}?deidentified=true`, `GET /dicom/{id}/metadata`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import pydicom
import structlog
import trio
from pydicom.dataset import Dataset, validate_file_meta
from pydicom.errors import InvalidDicomError

from contracts.bindings import AuditAction, AuditOutcome
from node.fhir.auth import parse_signed
from node.fhir.errors import FhirError, bad_request, forbidden, unauthorized
from node.fhir.http import Receive, Request, Scope, Send, respond
from node.fhir.index import ResourceRow
from node.fhir.service import PendingWrite, now_instant, parse_account
from node.records.cid import parse_cid

if TYPE_CHECKING:
    from node.fhir.service import Caller, FhirService

log = structlog.get_logger("medledger.fhir")
CHUNK = 1 << 20
DCM = "DCM"

# PS3.15 Table E.1-1 Basic Profile actions for the attributes that carry identity
# (D: dummy value, Z: empty, X: remove). UIDs (VR UI) are handled by consistent remapping.
_DUMMY = {
    "PatientName": "ANONYMOUS", "PatientID": "ANONYMOUS", "StudyDate": "19000101",
    "ContentDate": "19000101", "StudyTime": "000000", "ContentTime": "000000",
}
_EMPTY = (
    "AccessionNumber", "ReferringPhysicianName", "PatientBirthDate", "PatientSex", "StudyID",
)
_REMOVE = (
    "InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName", "StationName",
    "PhysiciansOfRecord", "PerformingPhysicianName", "NameOfPhysiciansReadingStudy",
    "OperatorsName", "AdmittingDiagnosesDescription", "OtherPatientIDs", "OtherPatientNames",
    "OtherPatientIDsSequence", "PatientBirthName", "PatientAge", "PatientSize", "PatientWeight",
    "PatientAddress", "PatientMotherBirthName", "MilitaryRank", "BranchOfService",
    "MedicalRecordLocator", "EthnicGroup", "Occupation", "AdditionalPatientHistory",
    "PatientComments", "PatientTelephoneNumbers", "PatientBirthTime", "PatientReligiousPreference",
    "CountryOfResidence", "RegionOfResidence", "MedicalAlerts", "Allergies",
    "DeviceSerialNumber", "ProtocolName", "SeriesDate", "AcquisitionDate", "SeriesTime",
    "AcquisitionTime", "AcquisitionDateTime", "InstanceCreationDate", "InstanceCreationTime",
    "RequestingPhysician", "ReferringPhysicianAddress", "ReferringPhysicianTelephoneNumbers",
    "RequestAttributesSequence", "StudyDescription", "SeriesDescription",
    "PerformedProcedureStepDescription", "PerformedProcedureStepID",
    "PerformedProcedureStepStartDate", "PerformedProcedureStepStartTime", "ImageComments",
    "InstitutionCodeSequence", "ReferencedPatientSequence", "IssuerOfPatientID",
    "RequestedProcedureDescription", "ScheduledProcedureStepDescription", "TextComments",
    "DigitalSignaturesSequence", "ReferencedStudySequence",
    "ReferencedPerformedProcedureStepSequence",
)
# UIDs that name a class or an encoding, not an instance: kept.
_KEEP_UIDS = {"SOPClassUID", "MediaStorageSOPClassUID", "TransferSyntaxUID",
              "ReferencedSOPClassUID", "ImplementationClassUID", "CodingSchemeUID"}


def remap_uid(secret: bytes, uid: str) -> str:
    """Deterministic replacement UID (2.25 + a 128-bit HMAC): the same input UID always maps
    to the same output, so studies, series and references stay linked."""
    digest = hmac.new(secret, uid.encode(), hashlib.sha256).digest()[:16]
    return f"2.25.{int.from_bytes(digest, 'big')}"


def deidentify_dataset(ds: Dataset, secret: bytes) -> None:
    """Apply the Basic Profile actions in place (header only)."""
    ds.remove_private_tags()
    for keyword, value in _DUMMY.items():
        if keyword in ds:
            ds.data_element(keyword).value = value
    for keyword in _EMPTY:
        if keyword in ds:
            ds.data_element(keyword).value = ""
    for keyword in _REMOVE:
        if keyword in ds:
            del ds[keyword]

    def remap(dataset: Dataset, element: Any) -> None:
        if element.VR == "UI" and element.keyword not in _KEEP_UIDS and element.value:
            if element.VM > 1:
                element.value = [remap_uid(secret, str(v)) for v in element.value]
            else:
                element.value = remap_uid(secret, str(element.value))

    ds.walk(remap)
    if getattr(ds, "file_meta", None) is not None and "MediaStorageSOPInstanceUID" in ds.file_meta:
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = "PS3.15 Basic Application Level Confidentiality Profile"
    code = Dataset()
    code.CodeValue = "113100"
    code.CodingSchemeDesignator = DCM
    code.CodeMeaning = "Basic Application Confidentiality Profile"
    ds.DeidentificationMethodCodeSequence = [code]


def deidentify_file(source: Path, target: Path, secret: bytes) -> None:
    """Header through pydicom; pixel data (and anything after) copied in chunks."""
    with open(source, "rb") as src:
        ds = pydicom.dcmread(src, stop_before_pixels=True)
        rest = src.tell()
        deidentify_dataset(ds, secret)
        with open(target, "wb") as out:
            ds.save_as(out, enforce_file_format=True)
            src.seek(rest)
            shutil.copyfileobj(src, out, CHUNK)


def parse_upload(path: Path) -> Dataset:
    """The header of an uploaded file with every element decoded. pydicom decodes values
    lazily, so a damaged element (an unknown VR, a bad length) would otherwise pass the upload
    and only fail when the stored file's metadata is first read."""
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        ds.to_json_dict()
        # A storable DICOM object (Part 10) names its SOP class and instance: without them it
        # cannot be de-identified, indexed or sent on to a PACS.
        validate_file_meta(ds.file_meta, enforce_standard=True)
        missing = [k for k in ("SOPClassUID", "SOPInstanceUID") if not ds.get(k)]
        if missing:
            raise InvalidDicomError(f"missing {', '.join(missing)}")
    except InvalidDicomError:
        raise
    except Exception as exc:
        raise InvalidDicomError(f"{type(exc).__name__}: {exc}") from exc
    return ds


def metadata(ds: Dataset) -> dict[str, Any]:
    keys = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID",
            "Modality", "Rows", "Columns", "NumberOfFrames")
    return {k: str(ds.get(k)) for k in keys if k in ds}


def _tempfile(dirpath: Path) -> Path:
    dirpath.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, name = tempfile.mkstemp(dir=dirpath, prefix=".dicom-")
    os.close(fd)
    return Path(name)


async def handle(service: FhirService, scope: Scope, receive: Receive, send: Send) -> None:
    try:
        parts = [p for p in scope["path"].split("/") if p]
        method = scope["method"]
        if parts == ["dicom"] and method == "POST":
            status, payload, headers = await upload(service, scope, receive)
            await respond(send, status, payload, headers)
            return
        if len(parts) in (2, 3) and method == "GET":
            caller = await _caller(service, scope, b"")
            query = dict(parse_qsl(bytes(scope.get("query_string", b"")).decode("latin-1")))
            if len(parts) == 3 and parts[2] == "metadata":
                await download(service, caller, parts[1], send, mode="metadata")
            elif len(parts) == 2:
                mode = "deid" if query.get("deidentified") in ("1", "true") else "original"
                await download(service, caller, parts[1], send, mode=mode)
            else:
                raise FhirError(404, "not-found", "no such DICOM endpoint")
            return
        raise FhirError(405, "not-supported", f"{method} {scope['path']}")
    except FhirError as exc:
        await respond(send, exc.status, exc.outcome(), {})


async def _caller(service: FhirService, scope: Scope, body_sha256: bytes | str) -> Caller:
    request = Request(scope, b"")
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return await service.caller(service.auth.token_address(header[7:].strip()))
    signed = parse_signed(request.headers)
    if signed is None or not body_sha256:
        raise unauthorized("authentication required: a signed request or a bearer token")
    address = service.auth.verify_signed(signed, request.method, request.target,
                                         str(body_sha256))
    return await service.caller(address)


async def upload(service: FhirService, scope: Scope, receive: Receive
                 ) -> tuple[int, Any, dict[str, str]]:
    request = Request(scope, b"")
    bearer = request.headers.get("authorization", "").lower().startswith("bearer ")
    caller = await _caller(service, scope, "") if bearer else None
    patient_header = request.headers.get("x-medledger-patient")
    if patient_header is None:
        raise bad_request("POST /dicom needs X-Medledger-Patient: 0x<patient account>")
    patient = parse_account(patient_header)
    tmp = _tempfile(service.config.datadir / "tmp")
    try:
        digest = hashlib.sha256()
        size = 0
        with open(tmp, "wb") as out:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise bad_request("client disconnected")
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > service.config.max_upload_bytes:
                    raise FhirError(413, "too-costly", "DICOM upload too large")
                digest.update(chunk)
                await trio.to_thread.run_sync(out.write, chunk)
                if not message.get("more_body", False):
                    break
        if caller is None:
            caller = await _caller(service, scope, digest.hexdigest())
        service.require_author(caller)
        role, _, active = await service.chainio.view("accountInfo", patient)
        if role != 6 or not active:
            raise FhirError(422, "processing", "X-Medledger-Patient is not an active patient")
        try:
            ds = await trio.to_thread.run_sync(parse_upload, tmp)
        except Exception as exc:  # pydicom raises many kinds for damaged input
            raise FhirError(422, "invalid", f"not a valid DICOM file: {exc}") from None
        meta = metadata(ds)

        def put() -> Any:
            with open(tmp, "rb") as src:
                return service.store.put(src, [service.record_key.public_key()])

        stored = await trio.to_thread.run_sync(put)
    finally:
        tmp.unlink(missing_ok=True)
    rid = str(uuid.uuid4())
    record_id = service.record_id("Binary", rid)
    updated = now_instant()
    calldata = service.medledger.create_record(
        record_id, patient, "Binary", parse_cid(stored.content_cid).to_bytes(), stored.sha3_256)
    row = ResourceRow("Binary", rid, record_id, patient, 1, updated, False)
    tokens = [("dicom", None, json.dumps(meta))]
    resource = {"resourceType": "Binary", "id": rid, "contentType": "application/dicom",
                "meta": {"versionId": "1", "lastUpdated": updated}}
    await service.commit([PendingWrite(row, resource, calldata, stored.record_cid,
                                       stored.content_cid, stored.sha3_256, tokens, True)])
    body = {**resource, "size": stored.size, "dicom": meta}
    return 201, body, {"Location": f"/dicom/{rid}"}


async def download(service: FhirService, caller: Caller, rid: str, send: Send, *, mode: str
                   ) -> None:
    row = service.row("Binary", rid)
    if not await service.may_read(caller, row, service.default_purpose):
        await service.audit(row, service.default_purpose, AuditAction.READ,
                            AuditOutcome.SERIOUS_FAILURE, caller)
        raise forbidden(f"may not read Binary/{rid}")
    version = service.index.versions(row.record_id)[0]
    await service.verify_version(row, version)
    tmp = _tempfile(service.config.datadir / "tmp")
    out = tmp
    try:
        await trio.to_thread.run_sync(lambda: service.store.read_to_file(
            version.bundle_cid, service.record_key, tmp, expected_sha3=version.sha3))
        await service.audit(row, service.default_purpose, AuditAction.READ,
                            AuditOutcome.SUCCESS, caller)
        try:
            if mode == "metadata":
                dicom_json = await trio.to_thread.run_sync(
                    lambda: pydicom.dcmread(tmp, stop_before_pixels=True).to_json_dict())
                await respond(send, 200, {"id": rid, "dicom": dicom_json}, {})
                return
            if mode == "deid":
                out = _tempfile(service.config.datadir / "tmp")
                await trio.to_thread.run_sync(deidentify_file, tmp, out, service.deid_secret)
        except Exception as exc:  # a stored file pydicom cannot handle (uploaded before checks)
            log.warning("dicom.unprocessable", record=f"Binary/{rid}", error=str(exc))
            action = "read" if mode == "metadata" else "de-identified"
            raise FhirError(422, "processing", f"the stored DICOM file cannot be {action}: "
                                               f"{type(exc).__name__}") from None
        size = out.stat().st_size
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"application/dicom"), (b"content-length", str(size).encode()),
            (b"cache-control", b"no-store")]})
        with open(out, "rb") as src:
            while True:
                chunk = await trio.to_thread.run_sync(src.read, CHUNK)
                more = len(chunk) == CHUNK
                await send({"type": "http.response.body", "body": chunk, "more_body": more})
                if not more:
                    break
    finally:
        tmp.unlink(missing_ok=True)
        if out != tmp:
            out.unlink(missing_ok=True)
