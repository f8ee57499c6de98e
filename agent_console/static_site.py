"""The console's static pages: a fixed table of files read once at start-up, looked up by exact path.

No sockets and no websockets import. Paths are never joined onto the file system at request time, so
there is no directory traversal: anything not in the table (``/static/../x``, ``%2e%2e``, ...) is 404.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from pathlib import Path

STATIC_DIR = Path(__file__).resolve().parent / "static"
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".json": "application/json",
}
PAGES = {"/": "console.html", "/console": "console.html", "/wallboard": "wallboard.html"}
_NAME_RE = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*$")
_MAX_FILE = 2 * 1024 * 1024
# The pages load only their own scripts and styles and talk only to this server's websocket.
_CSP = ("default-src 'self'; connect-src {connect}; img-src 'self' data:; style-src 'self'; "
        "script-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
_OTHER_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-cache"),
)


def security_headers(host: str | None) -> tuple[tuple[str, str], ...]:
    """The headers of every HTTP response. ``host``: the request's Host (already checked to be a plain
    host[:port]); the pages may then connect only to this server's own websocket origin, ws:// or wss://
    (behind a TLS proxy the page is https and uses wss). Without one, ``'self'`` alone."""
    connect = f"'self' ws://{host} wss://{host}" if host else "'self'"
    return (("Content-Security-Policy", _CSP.format(connect=connect)), *_OTHER_HEADERS)


@dataclass(frozen=True, slots=True)
class StaticFile:
    body: bytes
    content_type: str


WS_PATH_MARK = b"__CTI_WS_PATH__"  # in the pages' <meta name="cti-ws-path">, replaced by console.path


class StaticSite:
    """Maps request paths to in-memory files. ``lookup(path)`` -> StaticFile or None (404)."""

    def __init__(self, directory: Path = STATIC_DIR, ws_path: str = "/ws") -> None:
        files: dict[str, StaticFile] = {}
        for item in sorted(directory.iterdir()) if directory.is_dir() else []:
            ctype = CONTENT_TYPES.get(item.suffix)
            if ctype is None or not item.is_file() or not _NAME_RE.match(item.name):
                continue
            if item.stat().st_size > _MAX_FILE:
                raise ValueError(f"static file too large: {item.name}")
            body = item.read_bytes()
            if item.suffix == ".html":
                body = body.replace(WS_PATH_MARK, html.escape(ws_path).encode("utf-8"))
            files[item.name] = StaticFile(body, ctype)
        self._routes: dict[str, StaticFile] = {f"/static/{name}": f for name, f in files.items()}
        for path, name in PAGES.items():
            if name in files:
                self._routes[path] = files[name]

    def lookup(self, path: str) -> StaticFile | None:
        return self._routes.get(path.split("?", 1)[0])

    def paths(self) -> list[str]:
        return sorted(self._routes)
