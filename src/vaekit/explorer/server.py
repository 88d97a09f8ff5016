"""The explorer's local web server: the page's own files and a small JSON API over a ModelView.

It binds to 127.0.0.1 unless told otherwise, serves only the files of its `static/` folder by
exact name (no paths), and answers every bad request with a 4xx and a JSON {"error": sentence};
the server keeps running whatever a request holds.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from ..errors import InputError

STATIC = Path(__file__).parent / "static"
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
MAX_BODY = 1 << 20  # bytes of a request body
LOCAL_NAMES = ("127.0.0.1", "localhost")


def _assets() -> dict[str, Path]:
    return {p.name: p for p in STATIC.iterdir() if p.suffix in TYPES}


def make_handler(view):
    """A request handler class bound to one ModelView."""
    assets = _assets()
    lock = threading.Lock()  # one model call at a time: torch modules are not re-entrant across threads

    get_routes = {
        "/api/info": lambda q: view.info(),
        "/api/points": lambda q: view.points(),
        "/api/example": lambda q: view.example(_int(q, "i")),
        "/api/sample": lambda q: view.sample(_int(q, "n", 16), _float(q, "t", 1.0), _opt_int(q, "label")),
    }
    post_routes = {
        "/api/decode": lambda b: view.decode(b.get("z"), b.get("label")),
        "/api/interpolate": lambda b: view.interpolate(b.get("i"), b.get("j"), b.get("steps", 10), b.get("method", "linear")),
        "/api/arithmetic": lambda b: view.arithmetic(b.get("a"), b.get("b"), b.get("c"), b.get("label")),
        "/api/encode": lambda b: view.encode_pixels(b.get("pixels")),
    }

    class Handler(BaseHTTPRequestHandler):
        server_version = "vaekit-explorer"

        def log_message(self, format, *args):  # quiet: the terminal shows the URL, not every request
            pass

        def _send(self, status: int, body: bytes, kind: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, value) -> None:
            self._send(status, json.dumps(value).encode())

        def _answer(self, route, arg) -> None:
            try:
                with lock:
                    result = route(arg)
            except InputError as e:
                self._json(400, {"error": str(e)})
            except Exception as e:  # a bug must not stop the server: say it and carry on
                self._json(500, {"error": f"{type(e).__name__}: {e}"})
            else:
                self._json(200, result)

        def _foreign_host(self) -> bool:
            """A Host header that is not this server's own name: a page elsewhere reaching in by DNS rebinding."""
            host = (self.headers.get("Host") or "").rsplit(":", 1)[0].strip("[]").lower()
            if host in LOCAL_NAMES or host == self.server.server_address[0]:
                return False
            self._json(403, {"error": "Requests must name this server by its own address."})
            return True

        def do_GET(self):
            if self._foreign_host():
                return
            url = urlparse(self.path)
            if url.path in ("/", "/index.html"):
                self._send(200, assets["index.html"].read_bytes(), TYPES[".html"])
            elif url.path.startswith("/static/") and url.path[len("/static/"):] in assets:
                asset = assets[url.path[len("/static/"):]]
                self._send(200, asset.read_bytes(), TYPES[asset.suffix])
            elif url.path in get_routes:
                try:
                    query = {k: v[-1] for k, v in parse_qs(url.query, strict_parsing=False).items()}
                except ValueError:
                    return self._json(400, {"error": "The query string is malformed."})
                self._answer(get_routes[url.path], query)
            else:
                self._json(404, {"error": f"Nothing at {url.path}."})

        def do_POST(self):
            if self._foreign_host():
                return
            url = urlparse(self.path)
            if (self.headers.get("Content-Type") or "").split(";")[0].strip() != "application/json":
                return self._json(415, {"error": "Requests must send Content-Type: application/json."})
            if url.path not in post_routes:
                return self._json(404, {"error": f"Nothing to post to at {url.path}."})
            try:
                length = int(self.headers.get("Content-Length", "0"))
            except ValueError:
                return self._json(400, {"error": "Content-Length must be a number."})
            if not 0 <= length <= MAX_BODY:
                return self._json(413, {"error": f"Request bodies are limited to {MAX_BODY} bytes."})
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
                if not isinstance(body, dict):
                    raise ValueError("not an object")
            except (ValueError, UnicodeDecodeError):
                return self._json(400, {"error": "The request body must be a JSON object."})
            self._answer(post_routes[url.path], body)

    return Handler


def _int(query: dict, key: str, default: int | None = None) -> int:
    value = query.get(key)
    if value is None and default is not None:
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise InputError(f"{key} must be a whole number, got {value!r}.") from None


def _opt_int(query: dict, key: str):
    return None if query.get(key) in (None, "") else _int(query, key)


def _float(query: dict, key: str, default: float) -> float:
    try:
        return float(query.get(key, default))
    except (TypeError, ValueError):
        raise InputError(f"{key} must be a number, got {query.get(key)!r}.") from None


def serve(view, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """A running server (in a daemon thread) for `view`; its URL is http://host:server.server_port/."""
    try:
        server = ThreadingHTTPServer((host, port), make_handler(view))
    except OSError as e:
        raise InputError(f"Cannot listen on {host}:{port} ({e.strerror}); choose another --port or --host.") from None
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
