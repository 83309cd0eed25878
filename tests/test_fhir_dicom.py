"""DICOM through the FHIR node: streamed encrypted upload/download with access checks, and
PS3.15 Basic Profile de-identification with consistent UID remapping."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import pydicom
import pytest
from pydicom.data import get_testdata_file

from node.fhir.auth import sign_request
from node.fhir.dicom import deidentify_file, remap_uid
from tests.fhir_fixtures.harness import FhirNode, address_of, key_of, start_fhir_node

SECRET = b"test de-identification secret"


def sample_file(name: str) -> Path:
    path = get_testdata_file(name, download=False)
    assert path is not None, name
    return Path(str(path))


@pytest.fixture(scope="module")
def fhir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FhirNode]:
    node = start_fhir_node(tmp_path_factory.mktemp("fhir-dicom"))
    try:
        yield node
    finally:
        node.stop()


def headers(fhir: FhirNode, actor: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {fhir.bearer(actor)}",
            "Content-Type": "application/dicom",
            "X-Medledger-Patient": "0x" + address_of("pat-1").hex()}


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm", "rtplan.dcm"])
def test_deidentify_basic_profile(tmp_path: Path, name: str) -> None:
    source = sample_file(name)
    original = pydicom.dcmread(source)
    out = tmp_path / "deid.dcm"
    deidentify_file(source, out, SECRET)
    deid = pydicom.dcmread(out)
    assert deid.PatientIdentityRemoved == "YES"
    assert deid.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
    assert deid.DeidentificationMethodCodeSequence[0].CodingSchemeDesignator == "DCM"
    assert deid.PatientName == "ANONYMOUS"
    for keyword in ("PatientBirthDate", "ReferringPhysicianName"):
        if keyword in original:
            assert deid.get(keyword) in ("", None)
    for keyword in ("InstitutionName", "OperatorsName", "PatientAddress"):
        assert keyword not in deid
    assert not any(element.tag.is_private for element in deid)
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        assert deid[keyword].value == remap_uid(SECRET, original[keyword].value)
        assert deid[keyword].value != original[keyword].value
    assert deid.SOPClassUID == original.SOPClassUID
    assert deid.file_meta.MediaStorageSOPInstanceUID == deid.SOPInstanceUID
    if "PixelData" in original:
        assert deid.PixelData == original.PixelData


def test_uid_remapping_is_consistent(tmp_path: Path) -> None:
    source = sample_file("CT_small.dcm")
    first, second = tmp_path / "a.dcm", tmp_path / "b.dcm"
    deidentify_file(source, first, SECRET)
    deidentify_file(source, second, SECRET)
    assert pydicom.dcmread(first).StudyInstanceUID == pydicom.dcmread(second).StudyInstanceUID
    other = tmp_path / "c.dcm"
    deidentify_file(source, other, b"another node")
    assert pydicom.dcmread(other).StudyInstanceUID != pydicom.dcmread(first).StudyInstanceUID
    uid = remap_uid(SECRET, "1.2.3")
    assert uid.startswith("2.25.") and len(uid) <= 64


def test_upload_download_and_access(fhir: FhirNode) -> None:
    source = sample_file("CT_small.dcm")
    data = source.read_bytes()
    response = httpx.post(fhir.base + "/dicom", content=data, headers=headers(fhir, "doc-a"))
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["dicom"]["Modality"] == "CT" and body["size"] == len(data)
    rid = body["id"]
    original = httpx.get(fhir.base + f"/dicom/{rid}", headers=headers(fhir, "doc-a"))
    assert original.status_code == 200 and original.content == data
    deid = httpx.get(fhir.base + f"/dicom/{rid}", params={"deidentified": "true"},
                     headers=headers(fhir, "doc-a"))
    assert deid.status_code == 200
    ds = pydicom.dcmread(io.BytesIO(deid.content))
    assert ds.PatientIdentityRemoved == "YES" and ds.PatientName == "ANONYMOUS"
    meta = httpx.get(fhir.base + f"/dicom/{rid}/metadata", headers=headers(fhir, "doc-a"))
    assert meta.status_code == 200 and meta.json()["dicom"]["00080060"]["Value"] == ["CT"]
    # hospital B's doctor has no consent
    denied = httpx.get(fhir.base + f"/dicom/{rid}", headers=headers(fhir, "doc-b"))
    assert denied.status_code == 403
    assert httpx.get(fhir.base + f"/dicom/{rid}").status_code == 401
    # A signed request covers the streamed body: the hash is checked before registration.
    signed = sign_request(key_of("nurse-a"), "POST", "/dicom", data)
    extra = {"X-Medledger-Patient": "0x" + address_of("pat-1").hex(),
             "Content-Type": "application/dicom"}
    assert httpx.post(fhir.base + "/dicom", content=data,
                      headers={**signed, **extra}).status_code == 201
    forged = sign_request(key_of("nurse-a"), "POST", "/dicom", data + b"x")
    assert httpx.post(fhir.base + "/dicom", content=data,
                      headers={**forged, **extra}).status_code == 401
    not_dicom = httpx.post(fhir.base + "/dicom", content=b"hello" * 100,
                           headers=headers(fhir, "doc-a"))
    assert not_dicom.status_code == 422


def synthetic_dicom(size: int) -> tuple[bytes, int]:
    """The start of a DICOM file (a pydicom test file's header, then the PixelData tag and
    length of a `size`-byte value): the pixel bytes are streamed after it."""
    ds = pydicom.dcmread(sample_file("CT_small.dcm"), stop_before_pixels=True)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    # (7FE0,0010) OW, explicit VR little endian: tag, VR, 2 reserved bytes, 4-byte length
    element = b"\xe0\x7f\x10\x00OW\x00\x00" + size.to_bytes(4, "little")
    return buffer.getvalue() + element, size


def status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def reset_peak_rss() -> None:
    """Linux: writing 5 to clear_refs resets the peak RSS (VmHWM) to the current RSS."""
    Path("/proc/self/clear_refs").write_text("5")


@pytest.mark.slow
def test_200mb_upload_and_download_in_constant_memory(fhir: FhirNode, tmp_path: Path) -> None:
    header, size = synthetic_dicom(200 * 1024 * 1024)
    block = bytes(range(256)) * 4096  # 1 MiB

    def body() -> Iterator[bytes]:
        yield header
        for _ in range(size // len(block)):
            yield block

    reset_peak_rss()
    before = status_mb("VmRSS")
    response = httpx.post(fhir.base + "/dicom", content=body(), headers=headers(fhir, "doc-a"),
                          timeout=300)
    assert response.status_code == 201, response.text
    assert response.json()["size"] == len(header) + size
    rid = response.json()["id"]
    received = 0
    with httpx.stream("GET", fhir.base + f"/dicom/{rid}", headers=headers(fhir, "doc-a"),
                      timeout=300) as download:
        assert download.status_code == 200
        offset = 0
        for chunk in download.iter_bytes():
            if offset < len(header):
                head = chunk[:len(header) - offset]
                assert head == header[offset:offset + len(head)]
            received += len(chunk)
            offset += len(chunk)
    assert received == len(header) + size
    growth = status_mb("VmHWM") - before
    assert growth < 100, f"peak RSS grew by {growth:.0f} MB"
