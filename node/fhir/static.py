"""The built web UI (`web/dist`, committed) served under `/ui/` on the FHIR port.

The node serves prebuilt files only (no npm at run time). Hashed assets under `assets/` are
cached for good; `index.html` is never cached, so a new build is picked up on reload. Every
unknown path below `/ui/` gets `index.html` (the UI routes with the URL hash, so this only
keeps bookmarked paths working). A strict Content-Security-Policy allows same-origin scripts,
styles and connections only (the FHIR API, `/rpc` and the `$live` WebSocket).
"""

from __future__ import annotations

from pathlib import Path

import trio

from node.fhir.http import Scope, Send

DEFAULT_UI_DIR = Path(__file__).resolve().parents[2] / "web" / "dist"
PREFIX = "/ui/"
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".json": "application/json",
    ".txt": "text/plain; charset=utf-8",
    ".webmanifest": "application/manifest+json",
}
SECURITY_HEADERS = [
    (b"content-security-policy",
     b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
     b"connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
     b"form-action 'self'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]


def resolve(ui_dir: Path, path: str) -> Path | None:
    """The file for a request path below `/ui/`, or None when there is none; never a path
    outside `ui_dir` (`..`, symlinks out, absolute parts)."""
    relative = path[len(PREFIX):] if path.startswith(PREFIX) else ""
    root = ui_dir.resolve()
    candidate = (root / relative).resolve() if relative else root / "index.html"
    if not candidate.is_relative_to(root):
        return None
    if candidate.is_file():
        return candidate
    if relative.startswith("assets/") or Path(relative).suffix:
        return None  # a missing asset is a 404, not the app shell
    index = root / "index.html"
    return index if index.is_file() else None


async def serve_ui(ui_dir: Path, scope: Scope, send: Send) -> None:
    path: str = scope["path"]
    if path == "/" or path == "/ui":
        await _send(send, 308, [(b"location", PREFIX.encode())], b"")
        return
    if scope["method"] not in ("GET", "HEAD"):
        await _send(send, 405, [(b"allow", b"GET, HEAD")], b"method not allowed\n")
        return
    file = resolve(ui_dir, path)
    if file is None:
        if not (ui_dir / "index.html").is_file():
            body = (f"the web UI is not built: no {ui_dir}/index.html "
                    "(see web/README.md)\n").encode()
        else:
            body = b"not found\n"
        await _send(send, 404, [(b"content-type", b"text/plain; charset=utf-8")], body)
        return
    body = await trio.to_thread.run_sync(file.read_bytes)
    cache = (b"public, max-age=31536000, immutable" if "/assets/" in file.as_posix()
             and file.parent.name == "assets" else b"no-cache")
    content_type = CONTENT_TYPES.get(file.suffix, "application/octet-stream").encode()
    headers = [(b"content-type", content_type), (b"cache-control", cache)]
    await _send(send, 200, headers, b"" if scope["method"] == "HEAD" else body,
                length=len(body))


async def _send(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes,
                length: int | None = None) -> None:
    size = len(body) if length is None else length
    await send({"type": "http.response.start", "status": status,
                "headers": [*headers, *SECURITY_HEADERS,
                            (b"content-length", str(size).encode())]})
    await send({"type": "http.response.body", "body": body})
