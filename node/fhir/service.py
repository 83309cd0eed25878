"""The FHIR service: records as encrypted, on-chain-registered versions with access checks.

Writes: validate (R4B + bindings + codes) → encrypt with the record store for the hospital's
record key → register the version on chain from the hospital service account (a clinician
account of the hospital, the on-chain author) → index locally. Reads: `canAccess(caller)` on
chain (or the caller's break-glass window) → verify the local version data against the
on-chain version digest → fetch from the store, decrypt, check SHA3-256 → log the access on
chain (`logAccess`, exactly one event per record read).
"""

from __future__ import annotations

import io
import json
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import structlog
import trio
from eth_utils import keccak

from contracts.audit import audit_event
from contracts.bindings import (
    AuditAction,
    AuditOutcome,
    BreakGlassReason,
    Event,
    LogEntry,
    Purpose,
    Role,
    hospital_grantee,
    purposes_mask,
    version_digest,
)
from contracts.resource_types import resource_type_code
from node.chain import Chain
from node.fhir.auth import Authenticator
from node.fhir.chainio import ChainClient, ChainReverted
from node.fhir.config import FhirConfig
from node.fhir.errors import FhirError, bad_request, forbidden, not_found, unprocessable
from node.fhir.index import ResourceRow, SearchIndex, VersionRow
from node.fhir.live import LiveHub
from node.fhir.searchparams import extract_tokens, patient_reference, query_clauses
from node.fhir.validation import check_id, validate_resource
from node.records.cid import parse_cid
from node.records.keys import PrivateKey
from node.records.store import RecordStore
from node.txpool import TxPool
from node.worker import ChainWorker

if TYPE_CHECKING:
    from node.rpc.dispatch import Dispatcher

log = structlog.get_logger("medledger.fhir")

ACCOUNT_SYSTEM = "urn:medledger:account"
HOSPITAL_SYSTEM = "urn:medledger:hospital"
ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
PURPOSE_CODES = {"TREAT": Purpose.TREATMENT, "HPAYMT": Purpose.PAYMENT,
                 "HOPERAT": Purpose.OPERATIONS, "HRESCH": Purpose.RESEARCH}
BREAK_GLASS_REASONS = {"life-threatening": 1, "unable-to-consent": 2,
                       "urgent-consent-unobtainable": 3, "other": 4}
CLINICIANS = (Role.DOCTOR, Role.NURSE)
DEFAULT_GRANT_SECONDS = 365 * 24 * 3600
AUDITED_EVENTS = frozenset({"RecordVersionAdded", "AccessGranted", "AccessRevoked",
                            "AccessLogged", "AccessRequested", "BreakGlassOpened",
                            "BreakGlassReviewed"})


@dataclass(frozen=True)
class Caller:
    address: bytes
    role: int
    hospital: int

    @property
    def clinician(self) -> bool:
        return self.role in CLINICIANS


@dataclass
class PendingWrite:
    """A prepared version: encrypted and stored, its registration calldata ready."""

    row: ResourceRow
    resource: dict[str, Any]
    calldata: bytes
    bundle_cid: str
    content_cid: str
    sha3: bytes
    tokens: list[tuple[str, str | None, str]]
    created: bool


def now_instant() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_account(value: str) -> bytes:
    try:
        raw = bytes.fromhex(value.removeprefix("0x"))
    except ValueError:
        raise bad_request(f"not an account address: {value!r}") from None
    if len(raw) != 20:
        raise bad_request(f"not an account address: {value!r}")
    return raw


def hex_account(address: bytes) -> str:
    return "0x" + address.hex()


class FhirService:
    """Everything the HTTP layer calls; one per hospital node."""

    def __init__(
        self,
        chain: Chain,
        worker: ChainWorker,
        txpool: TxPool,
        store: RecordStore,
        signing_key: bytes,
        config: FhirConfig,
        record_key: PrivateKey,
    ) -> None:
        self.config = config
        self.store = store
        self.record_key = record_key
        self.chainio = ChainClient(chain, worker, txpool, signing_key)
        self.medledger = self.chainio.medledger
        self.auth = Authenticator(token_ttl=config.token_ttl, max_skew=config.max_skew)
        self.index = SearchIndex(config.datadir / "fhir-index.sqlite")
        self.live = LiveHub(self)
        self.hospital = 0
        self.default_purpose = Purpose.TREATMENT
        self.deid_secret = keccak(b"medledger:dicom-deid:" + signing_key)
        self._emergency: dict[tuple[bytes, bytes], int] = {}
        self._audit_lock = trio.Lock()
        self.rpc: Dispatcher | None = None  # the node's JSON-RPC, for the web UI's /rpc

    @property
    def service_address(self) -> bytes:
        return self.chainio.address

    async def start(self) -> None:
        """Check that the service account can author records (an active clinician)."""
        role, hospital, active = await self.chainio.view("accountInfo", self.service_address)
        if role not in CLINICIANS or not active:
            raise ValueError(
                f"the FHIR service account {hex_account(self.service_address)} must be an "
                "active doctor or nurse account of the hospital (registerStaff)"
            )
        self.hospital = int(hospital)

    def close(self) -> None:
        self.index.close()

    # -- identity -------------------------------------------------------------------------------

    async def caller(self, address: bytes) -> Caller:
        role, hospital, active = await self.chainio.view("accountInfo", address)
        if role == 0 or not active:
            raise forbidden(f"{hex_account(address)} is not an active registered account")
        return Caller(address, int(role), int(hospital))

    def record_id(self, rtype: str, rid: str) -> bytes:
        return keccak(f"medledger:fhir:{self.hospital}:{rtype}/{rid}".encode())

    # -- access ---------------------------------------------------------------------------------

    async def may_read(self, caller: Caller, row: ResourceRow, purpose: Purpose) -> bool:
        allowed = await self.chainio.view("canAccess", caller.address, row.record_id,
                                          int(purpose))
        if allowed:
            return True
        until = self._emergency.get((caller.address, row.patient), 0)
        if purpose == Purpose.TREATMENT and caller.clinician and until > time.time():
            onchain = await self.chainio.view("emergencyAccessUntil", self.service_address,
                                              row.patient)
            return int(onchain) > time.time()
        return False

    async def audit(self, row: ResourceRow, purpose: Purpose, action: AuditAction,
                    outcome: AuditOutcome, caller: Caller | None = None) -> None:
        """One on-chain AccessLogged event (pooled now, mined in the next block). On chain
        the accessor is the service account; the node's log names the person."""
        log.info("fhir.access", record=f"{row.rtype}/{row.id}", purpose=purpose.name,
                 action=action.name, outcome=outcome.name,
                 caller=None if caller is None else hex_account(caller.address))
        await self.chainio.submit(
            self.medledger.log_access(row.record_id, purpose, action, outcome), preflight=False
        )

    async def verify_version(self, row: ResourceRow, version: VersionRow) -> None:
        """The local CID and SHA3-256 are what the chain registered for this version."""
        digest = await self.chainio.view("versionDigest", row.record_id, version.version)
        expected = version_digest(row.record_id, version.version,
                                  parse_cid(version.content_cid).to_bytes(), version.sha3,
                                  version.author, version.block_time)
        if bytes(digest) != expected:
            raise FhirError(500, "exception",
                            "local version data does not match the on-chain version digest")

    async def _fetch(self, row: ResourceRow, version: VersionRow) -> dict[str, Any]:
        await self.verify_version(row, version)
        plaintext = await trio.to_thread.run_sync(
            lambda: self.store.read_bytes(version.bundle_cid, self.record_key,
                                          expected_sha3=version.sha3))
        return json.loads(plaintext)

    async def read_rows(
        self, caller: Caller, rows: list[tuple[ResourceRow, list[VersionRow]]], purpose: Purpose
    ) -> list[tuple[ResourceRow, VersionRow, dict[str, Any] | None]]:
        """Check, fetch, decrypt and audit (once per record) each row's listed versions."""
        out = []
        for row, versions in rows:
            if not await self.may_read(caller, row, purpose):
                await self.audit(row, purpose, AuditAction.READ, AuditOutcome.SERIOUS_FAILURE,
                                 caller)
                raise forbidden(f"{hex_account(caller.address)} may not read "
                                f"{row.rtype}/{row.id} (no consent on chain)")
            for version in versions:
                resource = None if version.deleted else await self._fetch(row, version)
                out.append((row, version, resource))
            await self.audit(row, purpose, AuditAction.READ, AuditOutcome.SUCCESS, caller)
        return out

    async def readable(self, caller: Caller, rows: list[ResourceRow], purpose: Purpose
                       ) -> list[ResourceRow]:
        return [row for row in rows if await self.may_read(caller, row, purpose)]

    def row(self, rtype: str, rid: str) -> ResourceRow:
        row = self.index.resource(rtype, check_id(rid))
        if row is None:
            raise not_found(f"{rtype}/{rid} is not known")
        return row

    async def read(self, caller: Caller, rtype: str, rid: str, purpose: Purpose,
                   version: int | None = None) -> tuple[VersionRow, dict[str, Any]]:
        row = self.row(rtype, rid)
        if version is None:
            chosen = self.index.versions(row.record_id)[0]
        else:
            found = self.index.version(row.record_id, version)
            if found is None:
                raise not_found(f"{rtype}/{rid} has no version {version}")
            chosen = found
        ((_, ver, resource),) = await self.read_rows(caller, [(row, [chosen])], purpose)
        if resource is None:
            raise FhirError(410, "deleted", f"{rtype}/{rid} was deleted")
        return ver, resource

    async def history(self, caller: Caller, rtype: str, rid: str | None, purpose: Purpose
                      ) -> list[tuple[ResourceRow, VersionRow, dict[str, Any] | None]]:
        if rid is not None:
            row = self.row(rtype, rid)
            return await self.read_rows(caller, [(row, self.index.versions(row.record_id))],
                                        purpose)
        grouped: dict[bytes, tuple[ResourceRow, list[VersionRow]]] = {}
        for row, version in self.index.type_versions(rtype):
            grouped.setdefault(row.record_id, (row, []))[1].append(version)
        allowed = await self.readable(caller, [r for r, _ in grouped.values()], purpose)
        return await self.read_rows(caller, [grouped[r.record_id] for r in allowed], purpose)

    async def search(self, caller: Caller, rtype: str | None, params: list[tuple[str, str]],
                     purpose: Purpose, offset: int, count: int
                     ) -> tuple[int, list[tuple[ResourceRow, VersionRow, dict[str, Any] | None]]]:
        rows = self.index.search(rtype, query_clauses(params))
        allowed = await self.readable(caller, rows, purpose)
        page = allowed[offset:offset + count]
        results = await self.read_rows(
            caller, [(r, self.index.versions(r.record_id)[:1]) for r in page], purpose)
        return len(allowed), results

    # -- writes ---------------------------------------------------------------------------------

    def require_author(self, caller: Caller) -> None:
        if not caller.clinician or caller.hospital != self.hospital:
            raise forbidden("only doctors and nurses of this hospital write records here")

    async def _patient_of(self, resource: dict[str, Any], hint: bytes | None) -> bytes:
        account: bytes | None = None
        if resource["resourceType"] == "Patient":
            for ident in resource.get("identifier", []):
                if ident.get("system") == ACCOUNT_SYSTEM and isinstance(ident.get("value"), str):
                    account = parse_account(ident["value"])
            if account is None:
                raise unprocessable(f"a Patient needs an identifier with system {ACCOUNT_SYSTEM}"
                                    " naming the patient's registered on-chain account")
        else:
            ref = patient_reference(resource)
            if ref is not None:
                account = self.index.patient_account(ref)
            if account is None:
                account = hint
            if account is None:
                raise unprocessable(
                    "cannot tell which patient this record belongs to: reference a Patient "
                    "known to this server (subject/patient) or send X-Medledger-Patient")
        role, _, active = await self.chainio.view("accountInfo", account)
        if role != Role.PATIENT or not active:
            raise unprocessable(f"{hex_account(account)} is not an active registered patient")
        return account

    async def prepare_write(
        self, caller: Caller, resource: dict[str, Any], *, rid: str | None = None,
        if_match: int | None = None, patient_hint: bytes | None = None, deleted: bool = False,
    ) -> PendingWrite:
        self.require_author(caller)
        rtype = resource["resourceType"]
        if not deleted:
            validate_resource(resource)
        try:
            resource_type_code(rtype)
        except ValueError:
            raise bad_request(f"{rtype} cannot be stored as a record") from None
        existing = None
        if rid is not None:
            existing = self.index.resource(rtype, check_id(rid))
        if existing is not None and if_match is not None and existing.version != if_match:
            raise FhirError(412, "conflict", f"{rtype}/{rid} is at version {existing.version}, "
                                             f"not {if_match}")
        if existing is None and deleted:
            raise not_found(f"{rtype}/{rid} is not known")
        rid = rid or str(uuid.uuid4())
        record_id = self.record_id(rtype, rid)
        version = 1 if existing is None else existing.version + 1
        updated = now_instant()
        stored = dict(resource)
        stored["id"] = rid
        stored["meta"] = {**stored.get("meta", {}), "versionId": str(version),
                          "lastUpdated": updated}
        if deleted:
            stored = {"resourceType": rtype, "id": rid, "meta": stored["meta"]}
        if existing is None:
            patient = await self._patient_of(stored, patient_hint)
        else:
            patient = existing.patient
            ref = patient_reference(stored)
            named = self.index.patient_account(ref) if ref is not None else None
            if named is not None and named != patient and not deleted:
                raise unprocessable(f"{rtype}/{rid} belongs to another patient on chain; "
                                    "a record cannot move between patients")
        plaintext = json.dumps(stored, separators=(",", ":"), ensure_ascii=False).encode()
        put = await trio.to_thread.run_sync(
            lambda: self.store.put(io.BytesIO(plaintext), [self.record_key.public_key()]))
        cid = parse_cid(put.content_cid).to_bytes()
        calldata = (self.medledger.create_record(record_id, patient, rtype, cid, put.sha3_256)
                    if existing is None else
                    self.medledger.add_version(record_id, cid, put.sha3_256))
        row = ResourceRow(rtype, rid, record_id, patient, version, updated, deleted)
        return PendingWrite(row, stored, calldata, put.record_cid, put.content_cid,
                            put.sha3_256, [] if deleted else extract_tokens(stored),
                            existing is None)

    async def commit(self, writes: list[PendingWrite]) -> list[PendingWrite]:
        """Register the versions on chain (one batch, usually one block), then index them."""
        try:
            receipts = await self.chainio.transact_many([w.calldata for w in writes])
        except ChainReverted as exc:
            raise FhirError(409, "conflict", f"the chain refused the version: {exc}") from None
        for write, receipt in zip(writes, receipts, strict=True):
            events = [e for e in self.medledger.decode_logs(receipt.logs)
                      if e.name == "RecordVersionAdded"]
            (event,) = events
            version = int(event.args["version"])
            if version != write.row.version:
                raise FhirError(409, "conflict", "a concurrent write registered another version")
            self.index.record_version(
                write.row,
                VersionRow(write.row.record_id, version, write.bundle_cid, write.content_cid,
                           write.sha3, event.args["author"], receipt.timestamp,
                           write.row.last_updated, write.row.deleted),
                write.tokens)
            if write.row.rtype == "Patient":
                self.index.set_patient(f"Patient/{write.row.id}", write.row.patient)
            await self.live.publish_version(event)
        return writes

    async def write(self, caller: Caller, resource: dict[str, Any], **kw: Any) -> PendingWrite:
        (done,) = await self.commit([await self.prepare_write(caller, resource, **kw)])
        return done

    # -- consent --------------------------------------------------------------------------------

    async def _consent_terms(self, consent: dict[str, Any]
                             ) -> tuple[bytes, list[bytes], int, int, list[bytes], list[str]]:
        ref = (consent.get("patient") or {}).get("reference")
        patient = self.index.patient_account(ref) if isinstance(ref, str) else None
        if patient is None:
            raise unprocessable("Consent.patient must reference a Patient known to this server")
        provision = consent.get("provision") or {}
        grantees: list[bytes] = []
        for actor in provision.get("actor", []):
            ident = (actor.get("reference") or {}).get("identifier") or {}
            if ident.get("system") == ACCOUNT_SYSTEM:
                grantees.append(parse_account(str(ident.get("value"))))
            elif ident.get("system") == HOSPITAL_SYSTEM:
                try:
                    grantees.append(hospital_grantee(int(str(ident.get("value")))))
                except ValueError:
                    raise unprocessable(f"bad hospital id {ident.get('value')!r}") from None
        if not grantees:
            raise unprocessable(
                f"Consent.provision.actor needs reference.identifier with system {ACCOUNT_SYSTEM}"
                f" (a staff account) or {HOSPITAL_SYSTEM} (a member hospital id)")
        purposes = [PURPOSE_CODES[c["code"]] for c in provision.get("purpose", [])
                    if c.get("system") == ACT_REASON and c.get("code") in PURPOSE_CODES]
        mask = purposes_mask(*(purposes or [Purpose.TREATMENT]))
        end = (provision.get("period") or {}).get("end")
        if end is None:
            expiry = int(time.time()) + DEFAULT_GRANT_SECONDS
        else:
            try:
                expiry = int(datetime.fromisoformat(end.replace("Z", "+00:00")).timestamp())
            except ValueError:
                raise unprocessable(f"Consent.provision.period.end {end!r} is not a dateTime"
                                    ) from None
        records = []
        for data in provision.get("data", []):
            target = (data.get("reference") or {}).get("reference", "")
            rtype, _, rid = target.partition("/")
            row = self.index.resource(rtype, rid) if rid else None
            if row is None or row.patient != patient:
                raise unprocessable(f"Consent.provision.data {target!r} is not a record of "
                                    "this patient on this server")
            records.append(row.record_id)
        classes = [c["code"] for c in provision.get("class", [])
                   if c.get("system") == "http://hl7.org/fhir/resource-types"]
        return patient, grantees, mask, expiry, records, classes

    async def _authorize_for_patient(self, caller: Caller, patient: bytes) -> None:
        if caller.address != patient and not await self.chainio.view(
                "isDelegate", patient, caller.address):
            raise forbidden("only the patient or a delegate of the patient manages consent")
        if not await self.chainio.view("isDelegate", patient, self.service_address):
            raise forbidden(
                f"the patient has not named this node's service account "
                f"{hex_account(self.service_address)} as a delegate (setDelegate), so it "
                "cannot submit consent on the patient's behalf")

    async def consent_create(self, caller: Caller, consent: dict[str, Any],
                             rid: str | None = None) -> PendingWrite:
        validate_resource(consent, "Consent")
        patient, grantees, mask, expiry, records, classes = await self._consent_terms(consent)
        await self._authorize_for_patient(caller, patient)
        if consent.get("status") != "active":
            raise unprocessable("a new Consent must have status 'active'")
        calls, grants = [], []
        for grantee in grantees:
            if records:
                calls.append(self.medledger.grant_records(grantee, records, mask, expiry))
                grants += [(grantee, 1, r) for r in records]
            else:
                for code in [resource_type_code(c) for c in classes] or [0]:
                    calls.append(self.medledger.encode("grantResourceType", patient, grantee,
                                                       code, mask, expiry))
                    grants.append((grantee, 2, code.to_bytes(32, "big")))
        try:
            for data in calls:
                await self.chainio.submit(data)
        except ChainReverted as exc:
            raise unprocessable(f"the chain refused the grant: {exc}") from None
        write = await self._store_consent(consent, rid)
        self.index.set_consent_grants(write.row.record_id, grants)
        return write

    async def _store_consent(self, consent: dict[str, Any], rid: str | None,
                             **kw: Any) -> PendingWrite:
        # The Consent record is authored by the service account on the patient's behalf.
        service = Caller(self.service_address, Role.DOCTOR, self.hospital)
        return await self.write(service, consent, rid=rid, **kw)

    async def consent_revoke(self, caller: Caller, rid: str, updated: dict[str, Any] | None
                             ) -> PendingWrite:
        row = self.row("Consent", rid)
        await self._authorize_for_patient(caller, row.patient)
        calls = []
        for grantee, kind, scope in self.index.consent_grants(row.record_id):
            if kind == 1:
                calls.append(self.medledger.revoke(grantee, scope))
            else:
                calls.append(self.medledger.encode("revokeResourceType", row.patient, grantee,
                                                   int.from_bytes(scope, "big")))
        for data in calls:
            try:
                await self.chainio.submit(data)
            except ChainReverted as exc:
                if exc.name != "GrantNotFound":  # already revoked: nothing to undo
                    raise unprocessable(f"the chain refused the revocation: {exc}") from None
        self.index.set_consent_grants(row.record_id, [])
        if updated is None:
            return await self._store_consent({"resourceType": "Consent"}, rid, deleted=True)
        validate_resource(updated, "Consent")
        return await self._store_consent(updated, rid)

    # -- break-glass ----------------------------------------------------------------------------

    async def break_glass(self, caller: Caller, patient_ref: str, reason: str, detail: str
                          ) -> list[tuple[ResourceRow, VersionRow, dict[str, Any] | None]]:
        if not caller.clinician:
            raise forbidden("break-glass is for doctors and nurses")
        _, active = await self.chainio.view("member", caller.hospital)
        if not active:
            raise forbidden("the clinician's hospital is not an active member")
        # By Patient reference, or by the patient's account (a wristband / card in an
        # emergency, when the clinician cannot search the patient's records yet).
        patient = (parse_account(patient_ref) if patient_ref.startswith("0x")
                   else self.index.patient_account(patient_ref))
        if patient is None or not self.index.patient_refs(patient):
            raise not_found(f"{patient_ref} is not known")
        numeric = reason.isascii() and reason.isdigit()  # str.isdigit() accepts '²'
        code = BREAK_GLASS_REASONS.get(reason) or (int(reason) if numeric else 0)
        if code not in {int(r) for r in BreakGlassReason}:
            raise unprocessable("a break-glass reason code is required: life-threatening, "
                                "unable-to-consent, urgent-consent-unobtainable or other")
        detail_hash = keccak(detail.encode()) if detail else b"\x00" * 32
        if code == BreakGlassReason.OTHER and not detail:
            raise unprocessable("reason 'other' needs a detail")
        try:
            receipt = await self.chainio.transact(
                self.medledger.open_break_glass(patient, code, detail_hash))
        except ChainReverted as exc:
            raise unprocessable(f"the chain refused break-glass: {exc}") from None
        (opened,) = [e for e in self.medledger.decode_logs(receipt.logs)
                     if e.name == "BreakGlassOpened"]
        self._emergency[(caller.address, patient)] = int(opened.args["until"])
        self.index.set_break_glass_requester(int(opened.args["caseId"]), caller.address)
        log.warning("fhir.break_glass", clinician=hex_account(caller.address),
                    patient=patient_ref, case=opened.args["caseId"], reason=code)
        self.live.publish_break_glass(patient, caller.address, int(opened.args["caseId"]))
        rows = [r for r in self.index.search(None, [("r.patient = ?", [patient])])]
        return await self.read_rows(
            caller, [(r, self.index.versions(r.record_id)[:1]) for r in rows],
            Purpose.TREATMENT)

    # -- audit trail ----------------------------------------------------------------------------

    def _scan_audit(self, start: int) -> list[tuple[int, list[tuple[Any, ...]]]]:
        """Worker thread: MedLedger's audit events of blocks `start`..head, per block (the
        SQLite index is written on the trio thread only)."""
        chain = self.chainio.chain
        out = []
        for number in range(start, chain.head.block_number + 1):
            block = chain.block_by_number(number)
            rows = []
            log_index = 0
            for receipt in chain.receipts(block):
                for raw in receipt.logs:
                    entry = LogEntry(bytes(raw.address),
                                     tuple(t.to_bytes(32, "big") for t in raw.topics),
                                     bytes(raw.data))
                    log_index += 1
                    event = self.medledger.decode_log(entry)
                    if event is None or event.name not in AUDITED_EVENTS:
                        continue
                    patient = event.args.get("patient")
                    record_id = event.args.get("recordId")
                    if patient is None and record_id is not None:
                        data = self.medledger.encode("record", record_id)
                        patient = self.medledger.decode(
                            "record", self.chainio.call_sync(self.medledger.address, data))[0]
                    rows.append((number, log_index, int(block.header.timestamp), patient,
                                 record_id, entry.address, b"".join(entry.topics), entry.data))
            out.append((number, rows))
        return out

    async def sync_audit(self) -> None:
        """Copy the audit events of blocks not seen yet into the local index, and tell the
        live subscribers whose patients got new events."""
        async with self._audit_lock:
            start = self.index.audit_height() + 1
            touched: set[bytes] = set()
            for number, rows in await self.chainio.worker.run(self._scan_audit, start):
                self.index.add_audit_logs(number, rows)
                touched.update(row[3] for row in rows if row[3] is not None)
            if touched:
                self.live.publish_audit(touched)

    async def require_trail_reader(self, caller: Caller, patient: bytes) -> None:
        """The patient, a delegate, or an auditor of the patient's or this node's hospital."""
        allowed = caller.address == patient or await self.chainio.view(
            "isDelegate", patient, caller.address)
        if not allowed and caller.role == Role.AUDITOR:
            _, home, _ = await self.chainio.view("accountInfo", patient)
            allowed = caller.hospital in (home, self.hospital)
        if not allowed:
            raise forbidden("only the patient, a delegate or an auditor reads the audit trail")

    def audit_events(self, patient: bytes | None, topics: set[bytes]
                     ) -> list[tuple[Event, int]]:
        """Decoded audit events of the given kinds (topic 0) from the local copy, with their
        block time, in chain order."""
        out = []
        for _, _, ts, address, raw, data in self.index.audit_logs_of_kinds(patient, topics):
            entry = LogEntry(address, tuple(raw[i:i + 32] for i in range(0, len(raw), 32)), data)
            event = self.medledger.decode_log(entry)
            if event is not None:
                out.append((event, ts))
        return out

    async def audit_trail(self, caller: Caller, patient_ref: str) -> list[dict[str, Any]]:
        patient = self.index.patient_account(patient_ref)
        if patient is None:
            raise not_found(f"{patient_ref} is not known")
        await self.require_trail_reader(caller, patient)
        await self.sync_audit()
        events = []
        for number, log_index, ts, address, topics, data in self.index.audit_logs(patient):
            entry = LogEntry(address, tuple(topics[i:i + 32] for i in range(0, len(topics), 32)),
                             data)
            event = self.medledger.decode_log(entry)
            assert event is not None
            resource = audit_event(event, ts, observer=f"medledger-hospital-{self.hospital}")
            resource["id"] = f"{number}-{log_index}"
            events.append(resource)
        return events

    # -- chain listener -------------------------------------------------------------------------

    async def on_block(self, block: Any, logs: list[dict[str, Any]]) -> None:
        """Block listener: refresh the audit copy and notify live subscribers. Never raises:
        a problem here must not stop the node's block processing."""
        try:
            await self._on_block(logs)
            header = block.header
            self.live.publish_block(int(header.block_number), bytes(header.hash),
                                    int(header.timestamp), len(block.transactions))
        except Exception:
            log.exception("fhir.block_listener_failed", block=getattr(block, "number", None))

    async def _on_block(self, logs: list[dict[str, Any]]) -> None:
        events: list[Event] = []
        for item in logs:
            entry = LogEntry(bytes.fromhex(item["address"][2:]),
                             tuple(bytes.fromhex(t[2:]) for t in item["topics"]),
                             bytes.fromhex(item["data"][2:]))
            event = self.medledger.decode_log(entry)
            if event is not None:
                events.append(event)
        if events:
            await self.live.publish_events(events)
        await self.sync_audit()
