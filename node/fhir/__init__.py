"""FHIR R4 REST API over the encrypted record store, with on-chain consent and audit."""

from node.fhir.config import FhirConfig
from node.fhir.server import serve_fhir
from node.fhir.service import FhirService

__all__ = ["FhirConfig", "FhirService", "serve_fhir"]
