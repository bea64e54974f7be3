"""HTTP for the viewer: routing, static files, security headers, and the standard-library server.

:class:`ViewerApp` maps a request (method, path, query, Host) to a
:class:`Response`; it is also a WSGI application, so any WSGI server can
host it. :class:`ViewerServer` is a ``http.server.ThreadingHTTPServer`` that
serves one ViewerApp; :func:`serve` starts one.

Only ``GET`` and ``HEAD`` exist: the viewer never writes. The page is served
with a Content-Security-Policy that allows no inline script or style and no
other origin. Bound to a loopback address, the server answers only requests
whose ``Host`` is a loopback name, so a web page cannot reach it through DNS
rebinding.

Example:
    >>> import numpy as np, json, urllib.request, tensorhouse as th
    >>> ds = th.create("memory://doc-viewer-server", {"score": "float32"})
    >>> _ = ds.append({"score": np.array([0.5, 0.25], "float32")})
    >>> server = th.serve("memory://doc-viewer-server", port=0, block=False)
    >>> json.load(urllib.request.urlopen(server.url + "api/info"))["rows"]
    2
    >>> server.stop()
"""

from __future__ import annotations

import ipaddress
import json
import logging
import socket
import sys
import threading
import traceback
import webbrowser
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, unquote

from tensorhouse.errors import TensorhouseError
from tensorhouse.viewer.api import ApiError, Ref, ViewerAPI
from tensorhouse.viewer.thumbnails import ThumbnailCache

log = logging.getLogger("tensorhouse.viewer")

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
STATIC = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
COMMON_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
    ("Cross-Origin-Resource-Policy", "same-origin"),
)
THUMB_MIN, THUMB_MAX, THUMB_DEFAULT = 16, 1024, 256


def dumps(doc: Any) -> bytes:
    """Strict JSON (no NaN: ``jsonable`` turned them into strings), UTF-8."""
    return json.dumps(doc, allow_nan=False, ensure_ascii=False, separators=(",", ":")).encode()


@dataclass
class Response:
    """What the app answers: status, headers and body."""

    status: int
    body: bytes
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)

    @staticmethod
    def json(doc: Any, status: int = 200) -> Response:
        return Response(status, dumps(doc), headers=[("Cache-Control", "no-store")])

    @staticmethod
    def error(status: int, message: str) -> Response:
        return Response.json({"error": message}, status)


def _params(query: str) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}


def _opt_int(params: Mapping[str, str], name: str) -> int | None:
    raw = params.get(name, "").strip()
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        raise ApiError(400, f"{name} must be an integer, got {raw!r}") from None


def _int(params: Mapping[str, str], name: str, default: int) -> int:
    value = _opt_int(params, name)
    return default if value is None else value


def _ref(params: Mapping[str, str], prefix: str = "") -> Ref:
    return Ref(
        _opt_int(params, prefix + "version"),
        params.get(prefix + "tag") or None,
        params.get(prefix + "branch") or None,
    )


def _host_name(host: str) -> str:
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class ViewerApp:
    """The viewer as a request -> response function (and a WSGI app).

    ``allowed_hosts``: the host names the ``Host`` header may carry (None: any).

    Example:
        >>> import tensorhouse as th
        >>> from tensorhouse.viewer import make_app
        >>> ds = th.create("memory://doc-viewer-app", {"x": "int64"})
        >>> _ = ds.append({"x": [1, 2, 3]})
        >>> app = make_app("memory://doc-viewer-app")
        >>> r = app.respond("GET", "/api/rows", "where=x%20%3E%201")
        >>> r.status, r.body.count(b'"_rowid"')
        (200, 2)
        >>> app.respond("GET", "/api/sample/99", "").status
        404
        >>> app.close()
    """

    def __init__(
        self,
        api: ViewerAPI,
        *,
        thumbnails: ThumbnailCache | None = None,
        allowed_hosts: Iterable[str] | None = None,
    ) -> None:
        self.api = api
        self.thumbnails = thumbnails or ThumbnailCache()
        self.allowed_hosts = (
            None if allowed_hosts is None else frozenset(h.lower() for h in allowed_hosts)
        )
        files = resources.files("tensorhouse.viewer") / "static"
        self._static = {name: (files / name).read_bytes() for name in STATIC}
        self._routes: dict[str, Callable[[Mapping[str, str], list[str]], Response]] = {
            "info": lambda p, _: Response.json(self.api.info(_ref(p))),
            "rows": self._rows,
            "sample": self._sample,
            "thumbnail": self._thumbnail,
            "diff": self._diff,
            "health": lambda p, _: Response.json(
                {"ok": True, "thumbnails": self.thumbnails.stats()}
            ),
        }

    # -- dispatch ---------------------------------------------------------------------
    def respond(self, method: str, path: str, query: str = "", host: str | None = None) -> Response:
        """Answer one request; never raises."""
        try:
            resp = self._dispatch(method, path, query, host)
        except ApiError as err:
            resp = Response.error(err.status, err.message)
        except TensorhouseError as err:
            resp = Response.error(500, f"{type(err).__name__}: {err}")
        except Exception as err:  # a bug: say so, keep serving
            log.error("viewer request %s %s failed:\n%s", method, path, traceback.format_exc())
            resp = Response.error(500, f"internal error: {type(err).__name__}: {err}")
        resp.headers.extend(COMMON_HEADERS)
        return resp

    def _dispatch(self, method: str, path: str, query: str, host: str | None) -> Response:
        if (
            host is not None
            and self.allowed_hosts is not None
            and _host_name(host) not in self.allowed_hosts
        ):
            return Response.error(
                403,
                f"host {host!r} is not allowed (the viewer answers to {sorted(self.allowed_hosts)})",
            )
        if method not in ("GET", "HEAD"):
            resp = Response.error(405, f"{method} is not allowed: the viewer is read-only")
            resp.headers.append(("Allow", "GET, HEAD"))
            return resp
        if path in ("/", "/index.html"):
            return self._file("index.html")
        if path.startswith("/static/") and path[len("/static/") :] in STATIC:
            return self._file(path[len("/static/") :])
        if path == "/favicon.ico":
            return Response(204, b"", "image/x-icon")
        parts = [unquote(p) for p in path.split("/")[1:]]
        if len(parts) >= 2 and parts[0] == "api" and parts[1] in self._routes:
            return self._routes[parts[1]](_params(query), parts[2:])
        return Response.error(404, f"no such page or endpoint: {path}")

    def _file(self, name: str) -> Response:
        headers = [("Cache-Control", "no-cache")]
        if name == "index.html":
            headers.append(("Content-Security-Policy", CSP))
        return Response(200, self._static[name], STATIC[name], headers)

    # -- endpoints --------------------------------------------------------------------
    def _rows(self, p: Mapping[str, str], _: list[str]) -> Response:
        return Response.json(
            self.api.rows(
                _ref(p),
                where=p.get("where"),
                sql=p.get("sql"),
                offset=_int(p, "offset", 0),
                limit=_int(p, "limit", 48),
            )
        )

    def _sample(self, p: Mapping[str, str], rest: list[str]) -> Response:
        if len(rest) != 1:
            raise ApiError(404, "use /api/sample/{rowid}")
        return Response.json(self.api.sample(_ref(p), _rowid(rest[0])))

    def _thumbnail(self, p: Mapping[str, str], rest: list[str]) -> Response:
        if len(rest) != 2:
            raise ApiError(404, "use /api/thumbnail/{rowid}/{column}")
        rowid = _rowid(rest[0])
        size = min(THUMB_MAX, max(THUMB_MIN, _int(p, "size", THUMB_DEFAULT)))
        ref = _ref(p)
        ds, load = self.api.image_source(ref, rowid, rest[1])
        thumb = self.thumbnails.get(
            (ds.uri, ds.branch_name, ds.version, rowid, rest[1], size), load, size
        )
        # A URL naming its version always means the same bytes; the default version may move.
        cache = "private, max-age=86400, immutable" if ref.version is not None else "no-cache"
        return Response(
            200,
            thumb.jpeg,
            "image/jpeg",
            [
                ("Cache-Control", cache),
                ("X-Image-Width", str(thumb.width)),
                ("X-Image-Height", str(thumb.height)),
                ("X-Image-Channels", str(thumb.channels)),
            ],
        )

    def _diff(self, p: Mapping[str, str], _: list[str]) -> Response:
        if not p.get("from", "").strip():
            raise ApiError(400, "diff needs from= (a version)")
        a = Ref(_opt_int(p, "from"), None, p.get("from_branch") or p.get("branch") or None)
        b = Ref(_opt_int(p, "to"), None, p.get("branch") or None)
        return Response.json(
            self.api.diff(
                a,
                b,
                kind=p.get("kind") or "added",
                offset=_int(p, "offset", 0),
                limit=_int(p, "limit", 48),
            )
        )

    # -- WSGI -------------------------------------------------------------------------
    def __call__(
        self, environ: Mapping[str, Any], start_response: Callable[..., Any]
    ) -> list[bytes]:
        """The WSGI entry point: ``gunicorn 'mymodule:app'`` with ``app = make_app(uri)``."""
        resp = self.respond(
            environ.get("REQUEST_METHOD", "GET"),
            environ.get("PATH_INFO", "/") or "/",
            environ.get("QUERY_STRING", ""),
            environ.get("HTTP_HOST"),
        )
        reason = {
            200: "OK",
            204: "No Content",
            400: "Bad Request",
            403: "Forbidden",
            404: "Not Found",
            405: "Method Not Allowed",
            500: "Internal Server Error",
        }.get(resp.status, "")
        headers = [
            ("Content-Type", resp.content_type),
            ("Content-Length", str(len(resp.body))),
            *resp.headers,
        ]
        start_response(f"{resp.status} {reason}", headers)
        return [b""] if environ.get("REQUEST_METHOD") == "HEAD" else [resp.body]

    def close(self) -> None:
        self.thumbnails.close()
        self.api.close()


def _rowid(raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ApiError(404, f"row id must be an integer, got {raw!r}") from None


class _Handler(BaseHTTPRequestHandler):
    server: ViewerServer
    protocol_version = "HTTP/1.1"  # keep-alive: a page loads dozens of thumbnails
    timeout = 60  # seconds an idle keep-alive connection keeps its thread

    def _answer(self) -> None:
        path, _, query = self.path.partition("?")
        resp = self.server.app.respond(self.command, path, query, self.headers.get("Host"))
        self.send_response(resp.status)
        self.send_header("Content-Type", resp.content_type)
        self.send_header("Content-Length", str(len(resp.body)))
        for k, v in resp.headers:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(resp.body)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _answer

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s - %s", self.address_string(), format % args)


class ViewerServer(ThreadingHTTPServer):
    """A threaded HTTP server for one :class:`ViewerApp`; ``start()`` runs it on a thread, ``stop()`` ends it.

    Example:
        >>> import tensorhouse as th
        >>> from tensorhouse.viewer import ViewerServer, make_app
        >>> _ = th.create("memory://doc-viewer-srv", {"x": "int64"})
        >>> with ViewerServer(make_app("memory://doc-viewer-srv"), port=0).start() as server:
        ...     server.url.startswith("http://127.0.0.1:")
        True
    """

    daemon_threads = True
    block_on_close = False  # idle keep-alive connections must not hold up stop()

    def __init__(self, app: ViewerApp, *, host: str = "127.0.0.1", port: int = 8765) -> None:
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.app = app
        self.host = host
        self._thread: threading.Thread | None = None
        self._stopped = False
        super().__init__((host, port), _Handler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def url(self) -> str:
        """Where a browser on this machine reaches the viewer."""
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self.host, self.host)
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}/"

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(
            sys.exc_info()[1], ConnectionError | TimeoutError
        ):  # a browser left mid-answer
            log.debug("viewer client %s went away", client_address)
            return
        super().handle_error(request, client_address)

    def start(self) -> ViewerServer:
        """Serve on a daemon thread; returns self."""
        self._thread = threading.Thread(
            target=self.serve_forever, name="tensorhouse-viewer", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close the socket and the app (idempotent)."""
        if self._stopped:
            return
        self._stopped = True
        if self._thread is not None:
            self.shutdown()
            self._thread.join()
        self.server_close()
        self.app.close()

    def __enter__(self) -> ViewerServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def is_loopback(host: str) -> bool:
    """Whether a bind address only accepts connections from this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def make_app(
    uri: str,
    *,
    version: int | None = None,
    tag: str | None = None,
    branch: str | None = None,
    storage_options: Mapping[str, Any] | None = None,
    query_timeout_s: float = 30.0,
    thumbnail_cache_bytes: int = 64 << 20,
    thumbnail_workers: int = 4,
    allowed_hosts: Iterable[str] | None = None,
    udfs: bool = True,
) -> ViewerApp:
    """The viewer for the dataset at ``uri`` as an app (WSGI callable), without a server.

    Example:
        >>> import tensorhouse as th
        >>> from tensorhouse.viewer import make_app
        >>> _ = th.create("memory://doc-make-app", {"x": "int64"})
        >>> make_app("memory://doc-make-app").respond("GET", "/api/info").status
        200
    """
    api = ViewerAPI(
        uri,
        version=version,
        tag=tag,
        branch=branch,
        storage_options=storage_options,
        query_timeout_s=query_timeout_s,
        udfs=udfs,
    )
    cache = ThumbnailCache(max_bytes=thumbnail_cache_bytes, workers=thumbnail_workers)
    return ViewerApp(api, thumbnails=cache, allowed_hosts=allowed_hosts)


def serve(
    uri: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    version: int | None = None,
    tag: str | None = None,
    branch: str | None = None,
    storage_options: Mapping[str, Any] | None = None,
    open_browser: bool = False,
    block: bool = True,
    query_timeout_s: float = 30.0,
) -> ViewerServer:
    """Serve the browser viewer of the dataset at ``uri`` on ``http://host:port/`` (``port=0``: any free one).

    ``block=True`` serves until Ctrl-C, then returns the stopped server;
    ``block=False`` returns the running server at once (``.url``, ``.stop()``).
    Binding to anything but a loopback address exposes the data, unauthenticated,
    to the network.

    Example:
        >>> import tensorhouse as th
        >>> _ = th.create("memory://doc-serve", {"x": "int64"})
        >>> server = th.serve("memory://doc-serve", port=0, block=False)
        >>> server.url.startswith("http://127.0.0.1:")
        True
        >>> server.stop()
    """
    loopback = is_loopback(host)
    app = make_app(
        uri,
        version=version,
        tag=tag,
        branch=branch,
        storage_options=storage_options,
        query_timeout_s=query_timeout_s,
        allowed_hosts=LOOPBACK_NAMES if loopback else None,
    )
    try:
        server = ViewerServer(app, host=host, port=port)
    except OSError:
        app.close()
        raise
    if not loopback:
        log.warning("the viewer listens on %s: anyone who can reach it can read the dataset", host)
    if open_browser:
        threading.Timer(0.3, webbrowser.open, args=(server.url,)).start()
    if not block:
        return server.start()
    print(f"tensorhouse viewer of {uri} at {server.url} (Ctrl-C to stop)", file=sys.stderr)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return server
