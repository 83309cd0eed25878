"""The FHIR R4 REST API as a plain ASGI 3 application (served by hypercorn on trio).

Routing, content negotiation, authentication and Bundle assembly; the record logic lives
in service.py, DICOM in dicom.py. Every error is an OperationOutcome.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import uuid
from typing import Any
from urllib.parse import quote, urlencode

import structlog

from contracts.resource_types import resource_type_code
from node.fhir import dicom, portal
from node.fhir.auth import parse_signed
from node.fhir.capability import capability_statement
from node.fhir.errors import FhirError, bad_request, operation_outcome, unauthorized
from node.fhir.http import Receive, Request, Scope, Send, respond
from node.fhir.index import ResourceRow, VersionRow
from node.fhir.openapi import serve_openapi
from node.fhir.rpcproxy import MAX_BODY_BYTES as RPC_MAX_BODY
from node.fhir.rpcproxy import serve_rpc_proxy
from node.fhir.searchparams import patient_reference
from node.fhir.service import (
    PURPOSE_CODES,
    Caller,
    FhirService,
    PendingWrite,
    parse_account,
)
from node.fhir.static import DEFAULT_UI_DIR, serve_ui
from node.fhir.validation import validate_resource
from node.fhir.websocket import serve_live
from node.ratelimit import ClientRateLimiter, client_host

_JSON_FORMATS = {"json", "application/json", "application/fhir+json", "application/json+fhir"}
_TYPE = re.compile(r"^[A-Z][A-Za-z]+$")
_ETAG = re.compile(r'^(W/)?"(\d+)"$')
_PORTAL = frozenset({"$me", "$records", "$grants", "$break-glass-cases"})
log = structlog.get_logger("medledger.fhir")

Entry = tuple[ResourceRow, VersionRow, dict[str, Any] | None]


_WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_NOT_WRITES = frozenset({"/auth/token", "/rpc"})  # a login; the RPC proxy refuses writes itself
READ_ONLY_MESSAGE = ("this node is read-only (an auditor node): it accepts no writes; "
                     "send them to a hospital's node")


class FhirApp:
    def __init__(self, service: FhirService) -> None:
        self.service = service
        self.limiter = ClientRateLimiter(service.config.rate_limit)
        self.read_only = service.config.read_only

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] == "websocket":
            await serve_live(self.service, scope, receive, send)
            return
        if scope["type"] != "http":
            return
        wait = self.limiter.check(client_host(scope))
        if wait is not None:
            log.info("fhir.rate_limited", client=client_host(scope))
            await respond(send, 429, operation_outcome("throttled", self.limiter.message()),
                          {"Retry-After": str(max(1, math.ceil(wait)))})
            return
        try:
            if (self.read_only and scope.get("method") in _WRITE_METHODS
                    and scope["path"].rstrip("/") not in _NOT_WRITES):
                raise FhirError(405, "not-supported", READ_ONLY_MESSAGE)
            if scope["path"] == "/openapi.json" and scope.get("method") in ("GET", "HEAD"):
                await serve_openapi(send)
                return
            if scope["path"].startswith("/dicom"):
                await dicom.handle(self.service, scope, receive, send)
                return
            if scope["path"] in ("/", "/ui") or scope["path"].startswith("/ui/"):
                await serve_ui(self.service.config.ui_dir or DEFAULT_UI_DIR, scope, send)
                return
            if scope["path"] == "/rpc":
                body = await self._read_body(receive, RPC_MAX_BODY)
                await serve_rpc_proxy(self.service.rpc, scope, body, send)
                return
            body = await self._read_body(receive, self.service.config.max_body_bytes)
            request = Request(scope, body)
            status, payload, headers = await self.dispatch(request)
        except FhirError as exc:
            status, payload, headers = exc.status, exc.outcome(), {}
        except Exception:
            log.exception("fhir.internal_error", path=scope.get("path"))
            status = 500
            payload = operation_outcome("exception", "internal error")
            headers = {}
        await respond(send, status, payload, headers)

    @staticmethod
    async def _read_body(receive: Receive, limit: int) -> bytes:
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise bad_request("client disconnected")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise FhirError(413, "too-costly", f"body larger than {limit} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    # -- authentication -----------------------------------------------------------------------

    async def authenticate(self, request: Request) -> Caller:
        address = self.authenticate_address(request)
        return await self.service.caller(address)

    def authenticate_address(self, request: Request, body_sha256: str | None = None) -> bytes:
        auth = self.service.auth
        header = request.headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            return auth.token_address(header[7:].strip())
        signed = parse_signed(request.headers)
        if signed is None:
            raise unauthorized("authentication required: a signed request or a bearer token")
        digest = body_sha256 or hashlib.sha256(request.body).hexdigest()
        return auth.verify_signed(signed, request.method, request.target, digest)

    # -- routing ------------------------------------------------------------------------------

    async def dispatch(self, request: Request) -> tuple[int, Any, dict[str, str]]:
        fmt = dict(request.query).get("_format")
        if fmt is not None and fmt not in _JSON_FORMATS:
            raise FhirError(415, "not-supported", f"_format {fmt!r}: only JSON is supported")
        path, method = request.path.rstrip("/"), request.method
        if path == "/auth/token":
            return await self.token(request)
        if not path.startswith("/fhir"):
            raise FhirError(404, "not-found", f"no such endpoint {request.path}")
        parts = [p for p in path[len("/fhir"):].split("/") if p]
        if parts == ["metadata"] and method == "GET":
            return 200, capability_statement(request.base), {}
        caller = await self.authenticate(request)
        purpose = self.purpose(request)
        if not parts:
            if method == "POST":
                return 200, await self.bundle(caller, request), {}
            raise FhirError(405, "not-supported", "only POST of a batch/transaction Bundle")
        if parts == ["$break-glass"] and method == "POST":
            return 200, await self.break_glass(caller, request), {}
        if len(parts) == 1 and parts[0] in _PORTAL and method == "GET":
            return 200, await self.portal(caller, parts[0], dict(request.query)), {}
        rtype = parts[0]
        if not _TYPE.match(rtype):
            raise bad_request(f"invalid resource type {rtype!r}")
        if rtype == "AuditEvent" and len(parts) == 1 and method == "GET":
            return 200, await self.audit_events(caller, request), {}
        if len(parts) == 1:
            if method == "GET":
                return 200, await self.search(caller, request, rtype, purpose), {}
            if method == "POST":
                return await self.create(caller, request, rtype)
        elif parts[1] == "_history" and len(parts) == 2 and method == "GET":
            entries = await self.service.history(caller, rtype, None, purpose)
            return 200, history_bundle(request, entries), {}
        elif len(parts) == 2:
            if method == "GET":
                version, resource = await self.service.read(caller, rtype, parts[1], purpose)
                return 200, resource, version_headers(request, rtype, parts[1], version)
            if method == "PUT":
                return await self.update(caller, request, rtype, parts[1])
            if method == "DELETE":
                return await self.delete(caller, rtype, parts[1])
        elif len(parts) == 3 and parts[2] == "_history" and method == "GET":
            entries = await self.service.history(caller, rtype, parts[1], purpose)
            return 200, history_bundle(request, entries), {}
        elif len(parts) == 4 and parts[2] == "_history" and method == "GET":
            if not (parts[3].isascii() and parts[3].isdigit()):  # not '²'
                raise bad_request(f"invalid version id {parts[3]!r}")
            version, resource = await self.service.read(caller, rtype, parts[1], purpose,
                                                        int(parts[3]))
            return 200, resource, version_headers(request, rtype, parts[1], version)
        raise FhirError(405, "not-supported", f"{method} {request.path} is not supported")

    async def portal(self, caller: Caller, operation: str, query: dict[str, str]) -> Any:
        """The web UI's operations (portal.py)."""
        if operation == "$me":
            return await portal.me(self.service, caller)
        if operation == "$records":
            return await portal.records(self.service, caller, query)
        if operation == "$grants":
            return await portal.grants(self.service, caller, query)
        return await portal.break_glass_cases(self.service, caller)

    @staticmethod
    def purpose(request: Request) -> Any:
        code = request.headers.get("x-medledger-purpose", "TREAT")
        if code not in PURPOSE_CODES:
            raise bad_request(f"X-Medledger-Purpose must be one of {', '.join(PURPOSE_CODES)}")
        return PURPOSE_CODES[code]

    async def token(self, request: Request) -> tuple[int, Any, dict[str, str]]:
        if request.method == "POST":
            if parse_signed(request.headers) is None:
                raise unauthorized("a bearer token is issued for a signed request only")
            caller = await self.authenticate(request)
            token, ttl = self.service.auth.issue_token(caller.address)
            return 200, {"access_token": token, "token_type": "Bearer", "expires_in": ttl}, {}
        if request.method == "DELETE":
            header = request.headers.get("authorization", "")
            if not header.lower().startswith("bearer "):
                raise unauthorized("no bearer token to end")
            self.service.auth.revoke_token(header[7:].strip())
            return 204, None, {}
        raise FhirError(405, "not-supported", "POST or DELETE /auth/token")

    # -- interactions -------------------------------------------------------------------------

    def _patient_hint(self, request: Request) -> bytes | None:
        value = request.headers.get("x-medledger-patient")
        if value is None:
            return None
        return parse_account(value)

    async def create(self, caller: Caller, request: Request, rtype: str
                     ) -> tuple[int, Any, dict[str, str]]:
        resource = request.json()
        if rtype == "Consent":
            write = await self.service.consent_create(caller, resource)
        else:
            validate_resource(resource, rtype)
            write = await self.service.write(caller, resource,
                                             patient_hint=self._patient_hint(request))
        return 201, write.resource, write_headers(request, write)

    async def update(self, caller: Caller, request: Request, rtype: str, rid: str
                     ) -> tuple[int, Any, dict[str, str]]:
        resource = request.json()
        validate_resource(resource, rtype)
        if resource.get("id") != rid:
            raise bad_request(f"the resource id {resource.get('id')!r} does not match the URL")
        if_match = parse_if_match(request.headers.get("if-match"))
        if rtype == "Consent":
            existing = self.service.index.resource("Consent", rid)
            if existing is None:
                write = await self.service.consent_create(caller, resource, rid)
            elif resource.get("status") == "active":
                raise unprocessable_consent()
            else:
                write = await self.service.consent_revoke(caller, rid, resource)
        else:
            write = await self.service.write(caller, resource, rid=rid, if_match=if_match,
                                             patient_hint=self._patient_hint(request))
        return (201 if write.created else 200), write.resource, write_headers(request, write)

    async def delete(self, caller: Caller, rtype: str, rid: str
                     ) -> tuple[int, Any, dict[str, str]]:
        if rtype == "Consent":
            await self.service.consent_revoke(caller, rid, None)
        else:
            row = self.service.row(rtype, rid)
            if row.deleted:
                raise FhirError(410, "deleted", f"{rtype}/{rid} was deleted")
            await self.service.write(caller, {"resourceType": rtype}, rid=rid, deleted=True)
        return 204, None, {}

    async def search(self, caller: Caller, request: Request, rtype: str, purpose: Any
                     ) -> dict[str, Any]:
        try:
            resource_type_code(rtype)
        except ValueError:
            raise bad_request(f"unknown resource type {rtype!r}") from None
        query = dict(request.query)
        config = self.service.config
        try:
            count = min(int(query.get("_count", config.default_count)), config.max_count)
            offset = max(int(query.get("_offset", 0)), 0)
        except ValueError:
            raise bad_request("_count and _offset must be integers") from None
        if count < 0:
            raise bad_request("_count must not be negative")
        total, entries = await self.service.search(caller, rtype, request.query, purpose,
                                                   offset, count)
        params = [(k, v) for k, v in request.query if k not in ("_offset",)]
        link = [{"relation": "self", "url": page_url(request, rtype, params, offset)}]
        if count and offset + count < total:
            link.append({"relation": "next",
                         "url": page_url(request, rtype, params, offset + count)})
        if offset > 0:
            link.append({"relation": "previous",
                         "url": page_url(request, rtype, params, max(offset - count, 0))})
        return {
            "resourceType": "Bundle", "type": "searchset", "total": total, "link": link,
            "entry": [{"fullUrl": f"{request.base}/{row.rtype}/{row.id}", "resource": res,
                       "search": {"mode": "match"}} for row, _, res in entries],
        }

    async def audit_events(self, caller: Caller, request: Request) -> dict[str, Any]:
        query = dict(request.query)
        ref = query.get("patient") or query.get("entity")
        if not ref:
            raise bad_request("AuditEvent search needs patient=Patient/<id>")
        ref = ref if "/" in ref else f"Patient/{ref}"
        events = await self.service.audit_trail(caller, ref)
        return {"resourceType": "Bundle", "type": "searchset", "total": len(events),
                "entry": [{"fullUrl": f"{request.base}/AuditEvent/{e['id']}", "resource": e,
                           "search": {"mode": "match"}} for e in events]}

    async def break_glass(self, caller: Caller, request: Request) -> dict[str, Any]:
        params = request.json()
        if not isinstance(params, dict) or params.get("resourceType") != "Parameters":
            raise bad_request("$break-glass takes a Parameters resource")
        values: dict[str, str] = {}
        entries = params.get("parameter", [])
        if not isinstance(entries, list) or not all(isinstance(p, dict) for p in entries):
            raise bad_request("Parameters.parameter must be a list of parameters")
        for p in entries:
            name = p.get("name")
            reference = p.get("valueReference")
            value = ((reference.get("reference") if isinstance(reference, dict) else None)
                     or p.get("valueCode") or p.get("valueString"))
            if isinstance(name, str) and isinstance(value, str):
                values[name] = value
        if "patient" not in values:
            raise bad_request("$break-glass needs a patient parameter")
        if "reason" not in values:
            raise FhirError(422, "required", "$break-glass needs a reason code")
        entries = await self.service.break_glass(caller, values["patient"], values["reason"],
                                                 values.get("detail", ""))
        return {"resourceType": "Bundle", "type": "searchset", "total": len(entries),
                "entry": [{"fullUrl": f"{request.base}/{row.rtype}/{row.id}", "resource": res,
                           "search": {"mode": "match"}} for row, _, res in entries]}

    async def bundle(self, caller: Caller, request: Request) -> dict[str, Any]:
        bundle = request.json()
        if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
            raise bad_request("POST /fhir takes a batch or transaction Bundle")
        kind = bundle.get("type")
        if kind not in ("batch", "transaction"):
            raise bad_request("Bundle.type must be batch or transaction")
        entries = bundle.get("entry") or []
        if not isinstance(entries, list) or not all(
                isinstance(e, dict) and isinstance(e.get("request") or {}, dict)
                for e in entries):
            raise bad_request("Bundle.entry must be a list of entries whose request is an "
                              "object")
        if kind == "transaction":
            return await self._transaction(caller, request, entries)
        out = []
        for entry in entries:
            try:
                out.append(await self._batch_entry(caller, request, entry))
            except FhirError as exc:
                out.append({"response": {"status": str(exc.status),
                                         "outcome": exc.outcome()}})
        return {"resourceType": "Bundle", "type": "batch-response", "entry": out}

    async def _batch_entry(self, caller: Caller, request: Request, entry: dict[str, Any]
                           ) -> dict[str, Any]:
        req = entry.get("request") or {}
        method, url = req.get("method"), str(req.get("url", ""))
        sub_scope = dict(request.scope, method=method, path="/fhir/" + url.split("?")[0],
                         query_string=url.partition("?")[2].encode())
        body = json.dumps(entry.get("resource")).encode() if "resource" in entry else b""
        sub = Request(sub_scope, body)
        sub.headers = dict(request.headers)
        if req.get("ifMatch"):
            sub.headers["if-match"] = req["ifMatch"]
        if method not in ("GET", "POST", "PUT", "DELETE"):
            raise bad_request(f"unsupported entry method {method!r}")
        parts = [p for p in sub.path[len("/fhir"):].split("/") if p]
        if not parts or not _TYPE.match(parts[0]):
            raise bad_request(f"invalid entry url {url!r}")
        purpose = self.purpose(sub)
        if method == "POST" and len(parts) == 1:
            status, resource, headers = await self.create(caller, sub, parts[0])
        elif method == "PUT" and len(parts) == 2:
            status, resource, headers = await self.update(caller, sub, parts[0], parts[1])
        elif method == "DELETE" and len(parts) == 2:
            status, resource, headers = await self.delete(caller, parts[0], parts[1])
        elif method == "GET":
            status, resource, headers = 200, None, {}
            if len(parts) == 1:
                resource = await self.search(caller, sub, parts[0], purpose)
            elif len(parts) == 2:
                version, resource = await self.service.read(caller, parts[0], parts[1], purpose)
                headers = version_headers(sub, parts[0], parts[1], version)
        else:
            raise bad_request(f"unsupported entry {method} {url}")
        response: dict[str, Any] = {"status": str(status)}
        if "Location" in headers:
            response["location"] = headers["Location"]
        if "ETag" in headers:
            response["etag"] = headers["ETag"]
        result: dict[str, Any] = {"response": response}
        if resource is not None:
            result["resource"] = resource
        return result

    async def _transaction(self, caller: Caller, request: Request,
                           entries: list[dict[str, Any]]) -> dict[str, Any]:
        """All writes validated and encrypted first, then registered in one batch of
        transactions; urn:uuid references between entries are resolved to the new ids."""
        ids: dict[str, str] = {}
        for entry in entries:
            req = entry.get("request") or {}
            if req.get("method") not in ("POST", "PUT"):
                raise bad_request("transaction entries must be POST or PUT")
            resource = entry.get("resource")
            if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"),
                                                                 str):
                raise bad_request("every transaction entry needs a resource")
            if resource["resourceType"] == "Consent":
                raise bad_request("Consent is not supported inside a transaction")
            full = entry.get("fullUrl")
            if req["method"] == "POST":
                new_id = str(uuid.uuid4())
                entry["_id"] = new_id
                if isinstance(full, str) and full.startswith("urn:uuid:"):
                    ids[full] = f"{resource['resourceType']}/{new_id}"
        hint = self._patient_hint(request)
        prepared = []
        for entry in entries:  # everything is validated before anything is encrypted
            resource = _rewrite(entry["resource"], ids)
            validate_resource(resource)
            prepared.append((entry, resource))
        bundle_patients: dict[str, bytes] = {}
        pending: list[PendingWrite] = []
        for entry, resource in prepared:
            req = entry["request"]
            if req["method"] == "POST":
                rid, if_match = entry["_id"], None
            else:
                rid = str(req.get("url", "")).split("/")[-1]
                if_match = parse_if_match(req.get("ifMatch"))
            ref = patient_reference(resource)
            entry_hint = bundle_patients.get(ref, hint) if ref is not None else hint
            write = await self.service.prepare_write(caller, resource, rid=rid,
                                                     if_match=if_match, patient_hint=entry_hint)
            if write.row.rtype == "Patient":
                bundle_patients[f"Patient/{rid}"] = write.row.patient
            pending.append(write)
        done = await self.service.commit(pending)
        out = []
        for write in done:
            headers = write_headers(request, write)
            out.append({"resource": write.resource,
                        "response": {"status": "201 Created" if write.created else "200 OK",
                                     "location": headers["Location"], "etag": headers["ETag"]}})
        return {"resourceType": "Bundle", "type": "transaction-response", "entry": out}


def unprocessable_consent() -> FhirError:
    return FhirError(422, "business-rule",
                     "an active Consent cannot be changed; revoke it (status inactive or "
                     "DELETE) and create a new one")


def _rewrite(node: Any, ids: dict[str, str]) -> Any:
    if isinstance(node, dict):
        return {k: (ids.get(v, v) if k == "reference" and isinstance(v, str)
                    else _rewrite(v, ids)) for k, v in node.items()}
    if isinstance(node, list):
        return [_rewrite(v, ids) for v in node]
    return node


def parse_if_match(value: Any) -> int | None:
    if value is None:
        return None
    match = _ETAG.match(value.strip()) if isinstance(value, str) else None
    if match is None:
        raise bad_request(f"invalid If-Match {value!r} (expected W/\"<version>\")")
    return int(match.group(2))


def version_headers(request: Request, rtype: str, rid: str, version: VersionRow
                    ) -> dict[str, str]:
    return {"ETag": f'W/"{version.version}"',
            "Last-Modified": version.last_updated,
            "Content-Location": f"{request.base}/{rtype}/{rid}/_history/{version.version}"}


def write_headers(request: Request, write: PendingWrite) -> dict[str, str]:
    row = write.row
    return {"Location": f"{request.base}/{row.rtype}/{row.id}/_history/{row.version}",
            "ETag": f'W/"{row.version}"', "Last-Modified": row.last_updated}


def page_url(request: Request, rtype: str, params: list[tuple[str, str]], offset: int) -> str:
    query = [*params, ("_offset", str(offset))] if offset else params
    return f"{request.base}/{quote(rtype)}" + (f"?{urlencode(query)}" if query else "")


def history_bundle(request: Request, entries: list[Entry]) -> dict[str, Any]:
    out = []
    for row, version, resource in sorted(entries, key=lambda e: e[1].last_updated,
                                         reverse=True):
        url = f"{row.rtype}/{row.id}"
        item: dict[str, Any] = {"fullUrl": f"{request.base}/{url}"}
        if resource is not None:
            item["resource"] = resource
        method = ("DELETE" if version.deleted else "POST" if version.version == 1 else "PUT")
        item["request"] = {"method": method, "url": url if method != "PUT" else url}
        item["response"] = {"status": "204" if version.deleted else
                            ("201" if version.version == 1 else "200"),
                            "etag": f'W/"{version.version}"',
                            "lastModified": version.last_updated}
        out.append(item)
    return {"resourceType": "Bundle", "type": "history", "total": len(out), "entry": out}
