"""Where and how the FHIR API listens."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from node.ratelimit import DEFAULT_FHIR_LIMIT, RateLimit


@dataclass(frozen=True)
class FhirConfig:
    datadir: Path  # the local search index and temporary files live here
    host: str = "127.0.0.1"
    port: int = 8080
    certfile: Path | None = None  # TLS: both or neither
    keyfile: Path | None = None
    token_ttl: float = 900.0  # bearer token lifetime (automatic logoff), seconds
    max_skew: float = 300.0  # signed-request clock skew and replay window, seconds
    max_body_bytes: int = 16 * 1024 * 1024  # FHIR JSON bodies
    max_upload_bytes: int = 8 * 1024**3  # DICOM uploads (streamed)
    default_count: int = 50
    max_count: int = 500
    ui_dir: Path | None = None  # the built web UI served under /ui/; None: web/dist
    read_only: bool = False  # an auditor's node: reads only, every write is refused (405)
    rate_limit: RateLimit = DEFAULT_FHIR_LIMIT  # per client IP (HTTP 429 past it)

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be between 0 and 65535, got {self.port}")
        if (self.certfile is None) != (self.keyfile is None):
            raise ValueError("TLS needs both a certificate and a key file")
        if self.token_ttl <= 0:
            raise ValueError("token_ttl must be positive")

    @property
    def tls(self) -> bool:
        return self.certfile is not None
