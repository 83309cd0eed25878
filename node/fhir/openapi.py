"""GET /openapi.json: an OpenAPI 3.0 description of the FHIR REST API this node serves.

Written from the routes in app.py and dicom.py (not generated from code), so clients,
API gateways and fuzzers (schemathesis) can see every operation, its parameters, the
authentication it needs and that every error is a FHIR OperationOutcome.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from node.fhir.capability import SOFTWARE_VERSION, supported_types
from node.fhir.service import PURPOSE_CODES

FHIR_JSON = "application/fhir+json"
_ERRORS = {
    "400": "Invalid request (malformed JSON, parameters or resource)",
    "401": "Not authenticated: sign the request (EIP-191) or send a bearer token",
    "403": "Authenticated but not allowed (role, consent)",
    "404": "No such resource or endpoint",
    "405": "Interaction not supported here (or the node is read-only)",
    "409": "Version conflict",
    "410": "The resource was deleted",
    "412": "If-Match does not name the current version",
    "413": "Body too large",
    "415": "Only JSON is supported",
    "422": "The resource breaks a FHIR or business rule",
    "429": "Rate limit exceeded (Retry-After says when to retry)",
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], media: str = FHIR_JSON) -> dict[str, Any]:
    return {"content": {media: {"schema": schema}}}


def _responses(success: dict[str, Any], *codes: str) -> dict[str, Any]:
    out = dict(success)
    for code in codes or tuple(_ERRORS):
        out[code] = {"description": _ERRORS[code], **_json(_ref("OperationOutcome"))}
    return out


_RTYPE = {"name": "type", "in": "path", "required": True}
_ID = {"name": "id", "in": "path", "required": True,
       "schema": {"type": "string", "pattern": "^[A-Za-z0-9\\-\\.]{1,64}$"}}
_VID = {"name": "vid", "in": "path", "required": True, "schema": {"type": "string"}}
_PURPOSE = {"name": "X-Medledger-Purpose", "in": "header", "required": False,
            "schema": {"type": "string", "enum": sorted(PURPOSE_CODES)}}
_PATIENT = {"name": "X-Medledger-Patient", "in": "header", "required": False,
            "description": "The patient's account (0x + 40 hex) when the resource names none",
            "schema": {"type": "string"}}
_IF_MATCH = {"name": "If-Match", "in": "header", "required": False,
             "schema": {"type": "string", "example": 'W/"1"'}}
_SEARCH = [{"name": name, "in": "query", "required": False, "schema": schema}
           for name, schema in (
               ("_count", {"type": "integer", "minimum": 0}),
               ("_offset", {"type": "integer", "minimum": 0}),
               ("_id", {"type": "string"}), ("_lastUpdated", {"type": "string"}),
               ("patient", {"type": "string"}), ("subject", {"type": "string"}),
               ("code", {"type": "string"}), ("date", {"type": "string"}),
               ("status", {"type": "string"}),
               ("_format", {"type": "string"}))]


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.0.3 document (servers: relative, so it fits any host and TLS setup)."""
    rtype = {**_RTYPE, "schema": {"type": "string", "enum": supported_types()}}
    resource = _json(_ref("Resource"))
    bundle = _json(_ref("Bundle"))
    secured = [{"bearer": []}, {"signed": []}]
    paths: dict[str, Any] = {
        "/fhir/metadata": {"get": {
            "operationId": "capabilities", "summary": "CapabilityStatement", "security": [],
            "responses": _responses({"200": {"description": "What this server supports",
                                             **resource}}, "415"),
        }},
        "/auth/token": {
            "post": {"operationId": "login", "summary": "A bearer token for a signed request",
                     "security": [{"signed": []}],
                     "responses": _responses({"200": {"description": "The token", **_json(
                         _ref("Token"), "application/json")}}, "401", "403", "429")},
            "delete": {"operationId": "logout", "summary": "End a bearer token",
                       "security": [{"bearer": []}],
                       "responses": _responses({"204": {"description": "Ended"}}, "401")},
        },
        "/fhir": {"post": {
            "operationId": "bundle", "summary": "A batch or transaction Bundle",
            "requestBody": {"required": True, **bundle},
            "responses": _responses({"200": {"description": "Bundle response", **bundle}}),
        }},
        "/fhir/$break-glass": {"post": {
            "operationId": "breakGlass", "summary": "Emergency access (audited on chain)",
            "requestBody": {"required": True, **_json(_ref("Parameters"))},
            "responses": _responses({"200": {"description": "Records opened", **bundle}}),
        }},
        "/fhir/{type}": {
            "get": {"operationId": "search", "parameters": [rtype, _PURPOSE, *_SEARCH],
                    "responses": _responses({"200": {"description": "searchset", **bundle}})},
            "post": {"operationId": "create", "parameters": [rtype, _PATIENT],
                     "requestBody": {"required": True, **resource},
                     "responses": _responses({"201": {"description": "Created", **resource}})},
        },
        "/fhir/{type}/_history": {"get": {
            "operationId": "historyType", "parameters": [rtype, _PURPOSE],
            "responses": _responses({"200": {"description": "history", **bundle}}),
        }},
        "/fhir/{type}/{id}": {
            "get": {"operationId": "read", "parameters": [rtype, _ID, _PURPOSE],
                    "responses": _responses({"200": {"description": "The resource",
                                                     **resource}})},
            "put": {"operationId": "update", "parameters": [rtype, _ID, _IF_MATCH, _PATIENT],
                    "requestBody": {"required": True, **resource},
                    "responses": _responses({"200": {"description": "Updated", **resource},
                                             "201": {"description": "Created", **resource}})},
            "delete": {"operationId": "delete", "parameters": [rtype, _ID],
                       "responses": _responses({"204": {"description": "Deleted"}})},
        },
        "/fhir/{type}/{id}/_history": {"get": {
            "operationId": "historyInstance", "parameters": [rtype, _ID, _PURPOSE],
            "responses": _responses({"200": {"description": "history", **bundle}}),
        }},
        "/fhir/{type}/{id}/_history/{vid}": {"get": {
            "operationId": "vread", "parameters": [rtype, _ID, _VID, _PURPOSE],
            "responses": _responses({"200": {"description": "That version", **resource}}),
        }},
        "/dicom": {"post": {
            "operationId": "dicomUpload", "summary": "Upload a DICOM file (streamed)",
            "parameters": [{**_PATIENT, "required": True}],
            "requestBody": {"required": True, "content": {"application/dicom": {
                "schema": {"type": "string", "format": "binary"}}}},
            "responses": _responses({"201": {"description": "Stored", **_json(
                {"type": "object"}, "application/json")}}),
        }},
        "/dicom/{id}": {"get": {
            "operationId": "dicomDownload",
            "parameters": [_ID, {"name": "deidentified", "in": "query", "required": False,
                                 "schema": {"type": "string", "enum": ["true", "false"]}}],
            "responses": _responses({"200": {"description": "The DICOM file", "content": {
                "application/dicom": {"schema": {"type": "string", "format": "binary"}}}}}),
        }},
        "/dicom/{id}/metadata": {"get": {
            "operationId": "dicomMetadata", "parameters": [_ID],
            "responses": _responses({"200": {"description": "DICOM JSON metadata", **_json(
                {"type": "object"}, "application/json")}}),
        }},
    }
    return {
        "openapi": "3.0.3",
        "info": {"title": "medledger FHIR R4 API", "version": SOFTWARE_VERSION,
                 "description": "FHIR R4 (JSON) over records encrypted off chain and "
                                "registered, consented and audited on the consortium chain."},
        "servers": [{"url": "/"}],
        "security": secured,
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "Token from POST /auth/token"},
                "signed": {"type": "apiKey", "in": "header", "name": "X-Medledger-Signature",
                           "description": "EIP-191 signature over method, target, body hash "
                                          "and X-Medledger-Timestamp (see node/fhir/auth.py)"},
            },
            "schemas": {
                "Resource": {"type": "object", "required": ["resourceType"],
                             "properties": {"resourceType": {"type": "string"},
                                            "id": {"type": "string"}},
                             "additionalProperties": True},
                "Bundle": {"type": "object", "required": ["resourceType", "type"],
                           "properties": {"resourceType": {"type": "string",
                                                           "enum": ["Bundle"]},
                                          "type": {"type": "string"},
                                          "entry": {"type": "array",
                                                    "items": {"type": "object"}}},
                           "additionalProperties": True},
                "Parameters": {"type": "object", "required": ["resourceType"],
                               "properties": {"resourceType": {"type": "string",
                                                               "enum": ["Parameters"]},
                                              "parameter": {"type": "array",
                                                            "items": {"type": "object"}}}},
                "OperationOutcome": {
                    "type": "object", "required": ["resourceType", "issue"],
                    "properties": {
                        "resourceType": {"type": "string", "enum": ["OperationOutcome"]},
                        "issue": {"type": "array", "minItems": 1, "items": {
                            "type": "object", "required": ["severity", "code"],
                            "properties": {"severity": {"type": "string"},
                                           "code": {"type": "string"},
                                           "diagnostics": {"type": "string"}}}}}},
                "Token": {"type": "object",
                          "required": ["access_token", "token_type", "expires_in"],
                          "properties": {"access_token": {"type": "string"},
                                         "token_type": {"type": "string"},
                                         "expires_in": {"type": "number"}}},
            },
        },
    }


@functools.cache
def _document_bytes() -> bytes:
    return json.dumps(openapi_document(), separators=(",", ":")).encode()


async def serve_openapi(send: Any) -> None:
    """Answer GET /openapi.json (public, like /fhir/metadata)."""
    body = _document_bytes()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"cache-control", b"no-cache")]})
    await send({"type": "http.response.body", "body": body})
