"""The web server under the control surface and the studio: aiohttp on a thread of its own,
with its own event loop, so nothing it does runs on the MIDI input, engine or output path.

aiohttp, because it is one maintained package that serves HTTP and WebSockets from one event
loop, with no separate ASGI server to run and no build step. The page assets ship inside the
package (``bachd/web/assets``) and are read into memory at start: no request names a file on
disk.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import re
import socket
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path
from typing import Any, Optional

from aiohttp import web

from bachd.errors import BachdError
from bachd.music.midiread import LIMITS
from bachd.web.guard import Guard, new_token

UPLOAD_LIMIT = LIMITS.size  # bytes: the MIDI reader's own limit (a chorale's file is a few kB)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ASSET_TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".png": "image/png",
    ".svg": "image/svg+xml",
}
# Every answer: no page of another site may frame it (clickjacking), run or load anything but
# bachd's own assets in it, sniff a type into it, embed it, or learn its address (the token).
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "media-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'self'; "
                               "frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}
# Connections. A loopback page needs a handful (a browser opens six at most per server); a
# neighbour may open thousands, send nothing, and open another for each one closed. So a new
# connection costs a socket and nothing more until it sends its first bytes (no aiohttp
# handler, no task): at most SILENT_LIMIT such wait, a new one closing the oldest (on
# loopback a browser speaks within a millisecond of connecting). Once it speaks, it is
# untrusted until one of its requests passes the guard: at most UNTRUSTED_LIMIT of those. None
# of either kind outlives UNTRUSTED_SECONDS. While connections are closed to make room,
# accepting is paced, so a flood takes a bounded share of the interpreter from the MIDI path,
# and a token holder's new connection reaches the front of the queue within about
# (the flood's size / ACCEPTS_PER_SECOND) seconds. A page already open keeps its connections.
MAX_CONNECTIONS = 128
SILENT_LIMIT = 64
UNTRUSTED_LIMIT = 32
UNTRUSTED_SECONDS = 5.0
ACCEPTS_PER_SECOND = 2000.0  # under pressure
KEEPALIVE_SECONDS = 30.0


def json_error(message: str, status: int = 400) -> web.Response:
    """A refusal or a bad request: one line for the page to show."""
    return web.json_response({"error": message}, status=status)


def _assets() -> dict[str, tuple[bytes, str]]:
    folder = resources.files("bachd.web") / "assets"
    found = {}
    for item in folder.iterdir():
        suffix = "." + item.name.rsplit(".", 1)[-1]
        if suffix in ASSET_TYPES:
            found[item.name] = (item.read_bytes(), ASSET_TYPES[suffix])
    return found


class Complaints:
    """What the server says on stderr about requests it refuses or cannot read: one line per
    kind a minute at most (with how many more there were), never a traceback, so a neighbour's
    flood cannot fill the terminal or the journal."""

    def __init__(self, write: Callable[[str], object] = sys.stderr.write, every: float = 60.0, clock=time.monotonic):
        self.write, self.every, self.clock = write, every, clock
        self._last: dict[str, float] = {}
        self._quiet: dict[str, int] = {}

    def __call__(self, kind: str, detail: str = "") -> None:
        now = self.clock()
        last = self._last.get(kind)
        if last is not None and now - last < self.every:
            self._quiet[kind] = self._quiet.get(kind, 0) + 1
            return
        self._last[kind] = now
        more = self._quiet.pop(kind, 0)
        tail = f" ({more} more in the last minute)" if more else ""
        line = f"bachd: web: {kind}{': ' + detail if detail else ''}{tail}"
        try:
            self.write(ascii(line)[1:-1] + "\n")
        except (OSError, ValueError):
            pass  # no terminal left to tell


class _LogToComplaints(logging.Handler):
    """aiohttp's and asyncio's own log records (a request it could not parse, an accept that
    failed) as complaints: their message's first line, no traceback."""

    def __init__(self, complaints: Complaints):
        super().__init__(logging.WARNING)
        self.complaints = complaints

    def emit(self, record: logging.LogRecord) -> None:
        error = record.exc_info[1] if record.exc_info else None
        kind = type(error).__name__ if error is not None else record.getMessage().splitlines()[0][:60]
        self.complaints(f"{record.name}: {kind}", " ".join(str(error or "").split())[:160])


class Gate:
    """The server's connections: silent (accepted, nothing sent yet), untrusted (an aiohttp
    handler, no request has passed the guard yet) and trusted."""

    def __init__(self, complaints: Complaints):
        self.complaints = complaints
        self.silent: dict[socket.socket, float] = {}  # oldest first
        self.untrusted: dict[Any, float] = {}  # handler -> when it spoke; oldest first
        self.trusted: set = set()
        self.room = asyncio.Event()
        self.closed = 0  # connections closed to make room or for taking too long
        self.loop: Optional[asyncio.AbstractEventLoop] = None
        self.server: Optional[Callable[[], asyncio.Protocol]] = None

    def attach(self, loop: asyncio.AbstractEventLoop, server: Callable[[], asyncio.Protocol]) -> None:
        self.loop, self.server = loop, server

    def trust(self, handler) -> None:
        if self.untrusted.pop(handler, None) is not None:
            self.trusted.add(handler)

    def full(self) -> bool:
        """Every place held by a connection that brought the token: none can be closed."""
        self._drop_gone()
        return len(self.trusted) >= MAX_CONNECTIONS

    def hold(self, connection: socket.socket, now: float) -> bool:
        """A new connection waits, costing nothing, until it speaks; whether an older one had
        to be closed for it (the server is under pressure)."""
        assert self.loop is not None
        self.silent[connection] = now
        self.loop.add_reader(connection.fileno(), self._spoke, connection)
        closed = 0
        while len(self.silent) > SILENT_LIMIT:
            self._close_silent(next(iter(self.silent)))
            closed += 1
        self._closed(closed)
        return closed > 0

    def _close_silent(self, connection: socket.socket) -> None:
        del self.silent[connection]
        assert self.loop is not None
        self.loop.remove_reader(connection.fileno())
        connection.close()

    def _spoke(self, connection: socket.socket) -> None:
        assert self.loop is not None
        self.loop.remove_reader(connection.fileno())
        if self.silent.pop(connection, None) is not None:
            self.loop.create_task(self._hand_over(connection))

    async def _hand_over(self, connection: socket.socket) -> None:
        assert self.loop is not None and self.server is not None
        try:
            _, handler = await self.loop.connect_accepted_socket(self.server, connection)
        except OSError:
            connection.close()
            return
        self.untrusted[handler] = self.loop.time()
        closed = 0
        while self.untrusted and (len(self.untrusted) > UNTRUSTED_LIMIT
                                  or len(self.untrusted) + len(self.trusted) > MAX_CONNECTIONS):
            oldest = next(iter(self.untrusted))
            del self.untrusted[oldest]
            oldest.force_close()
            closed += 1
        self._closed(closed)

    def reap(self, now: float) -> None:
        """Close the silent and untrusted connections past their time."""
        self._drop_gone()
        late = [c for c, since in self.silent.items() if now - since > UNTRUSTED_SECONDS]
        for connection in late:
            self._close_silent(connection)
        handlers = [h for h, since in self.untrusted.items() if now - since > UNTRUSTED_SECONDS]
        for handler in handlers:
            del self.untrusted[handler]
            handler.force_close()
        self._closed(len(late) + len(handlers))
        if len(self.trusted) < MAX_CONNECTIONS:
            self.room.set()

    def close(self) -> None:
        for connection in list(self.silent):
            self._close_silent(connection)

    def _closed(self, count: int) -> None:
        if count:
            self.closed += count
            self.complaints("closed connections that brought no token", f"{self.closed} so far")

    def _drop_gone(self) -> None:
        for handler in [h for h in self.untrusted if h.transport is None]:
            del self.untrusted[handler]
        self.trusted = {h for h in self.trusted if h.transport is not None}


class WebServer:
    """Binds at construction (a taken port fails at once, before MIDI ports open), serves
    from :meth:`start` on a daemon thread, stops with :meth:`close`.

    ``page``: the asset served at ``/``; ``routes(app)`` adds the API."""

    def __init__(self, page: str, routes: Callable[[web.Application], None], host: str = "127.0.0.1",
                 port: int = 0, token: Optional[str] = None, port_flag: str = "--ui-port"):
        self.host, self.page = host, page
        self.token = token or new_token()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.sock.bind((host, port))
        except OSError as error:
            self.sock.close()
            if error.errno == errno.EADDRINUSE:
                raise BachdError(
                    f"{port_flag} {port} is in use; choose another, or leave it out for a free one"
                ) from None
            raise BachdError(f"cannot serve on {host}:{port}: {error.strerror or error}") from None
        self.sock.listen(1024)  # a flood waits in the kernel's queue, not in dropped SYNs and retries
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.guard = Guard(self.token, host, self.port)
        self.complaints = Complaints()
        self.gate = Gate(self.complaints)
        self.assets = _assets()
        self.app = web.Application(middlewares=[self._guarded], client_max_size=UPLOAD_LIMIT + 64 * 1024)
        self.app.on_response_prepare.append(self._secure)
        self.app.router.add_get("/", self._page)
        self.app.router.add_get("/assets/{name}", self._asset)
        routes(self.app)
        self.loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None
        self._stopped: Optional[asyncio.Event] = None

    @property
    def url(self) -> str:
        """The address to open on this computer (served on every interface: loopback's)."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}/?token={self.token}"

    # --- the rules -----------------------------------------------------------------------------
    @web.middleware
    async def _guarded(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            refusal = self.guard.refusal(request.method, request.path, request.headers, request.query, request.cookies)
        except Exception as error:  # noqa: BLE001 - bytes no rule foresaw: refused, not a 500
            refusal = f"refused: a request bachd cannot read ({type(error).__name__})"
        if refusal is not None:
            self.complaints(refusal.split(" '")[0].split(" (")[0])  # the kind, never the sender's bytes
            response = json_error(refusal, 403)
            response.force_close()  # a refused connection is not kept for another try
            return response
        self.gate.trust(request.protocol)
        if request.path == "/" and "token" in request.query:
            # The token moves from the address bar to this server's own cookie.
            response = web.HTTPSeeOther("/")
            response.set_cookie(self.guard.cookie, self.token, httponly=True, samesite="Strict", path="/")
            raise response
        try:
            return await handler(request)
        except web.HTTPException as error:
            if error.status == 413:
                return json_error(f"too large: uploads are limited to {UPLOAD_LIMIT // (1024 * 1024)} MB", 413)
            if error.status >= 400:
                return json_error(error.reason, error.status)
            raise
        except BachdError as error:
            return json_error(str(error), 400)
        except (asyncio.CancelledError, ConnectionResetError):
            raise
        except Exception as error:  # noqa: BLE001 - the page gets one line; bachd plays on
            self.complaints(f"internal error in {request.path[:40]}", f"{type(error).__name__}: {error}")
            return json_error(f"internal error: {type(error).__name__}", 500)

    @staticmethod
    async def _secure(request: web.Request, response: web.StreamResponse) -> None:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)

    async def _page(self, request: web.Request) -> web.Response:
        body, kind = self.assets[self.page]
        return web.Response(body=body, content_type=kind, headers={"Cache-Control": "no-store"})

    async def _asset(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if not re.fullmatch(r"[a-z0-9_-]+\.[a-z]+", name) or name not in self.assets:
            return json_error("no such asset", 404)
        body, kind = self.assets[name]
        return web.Response(body=body, content_type=kind)

    # --- life ----------------------------------------------------------------------------------
    def start(self) -> None:
        ready = threading.Event()
        failure: list[BaseException] = []
        self._thread = threading.Thread(target=self._serve, args=(ready, failure), name="bachd-web", daemon=True)
        self._thread.start()
        ready.wait(10.0)
        if failure:
            raise BachdError(f"the control surface did not start: {failure[0]}")

    def _serve(self, ready: threading.Event, failure: list) -> None:
        loop = self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        loop.set_exception_handler(lambda _, context: self.complaints(
            "event loop", " ".join(str(context.get("exception") or context.get("message", "")).split())[:160]))
        _quiet_logs(self.complaints)
        runner = web.AppRunner(self.app, handle_signals=False, access_log=None, shutdown_timeout=0.5,
                               keepalive_timeout=KEEPALIVE_SECONDS)
        tasks: list[asyncio.Task] = []
        try:
            loop.run_until_complete(runner.setup())
            assert runner.server is not None
            self.gate.attach(loop, runner.server)
            tasks = [loop.create_task(self._accept()), loop.create_task(self._reap())]
            self._stopped = asyncio.Event()
        except BaseException as error:  # noqa: BLE001
            failure.append(error)
            ready.set()
            return
        ready.set()
        try:
            loop.run_until_complete(self._stopped.wait())
            for task in tasks:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            self.gate.close()
            loop.run_until_complete(asyncio.wait_for(runner.cleanup(), 2.0))
        except BaseException:  # noqa: BLE001 - closing: nothing left to tell
            pass
        finally:
            self.sock.close()
            loop.close()

    async def _accept(self) -> None:
        """Accept connections within the gate's limits (see :data:`SILENT_LIMIT`)."""
        loop = asyncio.get_running_loop()
        while True:
            while self.gate.full():
                self.gate.room.clear()
                await self.gate.room.wait()
            try:
                connection, _ = await loop.sock_accept(self.sock)
            except OSError as error:  # out of descriptors, say: wait, and say so once a minute
                self.complaints("cannot accept a connection", error.strerror or str(error))
                await asyncio.sleep(0.5)
                continue
            connection.setblocking(False)
            if self.gate.hold(connection, loop.time()):
                await asyncio.sleep(1.0 / ACCEPTS_PER_SECOND)

    async def _reap(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(0.5)
            self.gate.reap(loop.time())

    def call(self, function: Callable[[], object]) -> None:
        """Run ``function`` on the server's loop (from any thread)."""
        if self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(function)

    def close(self) -> None:
        if self._thread is None:
            self.sock.close()
            return
        if self._stopped is not None:
            self.call(self._stopped.set)
        self._thread.join(timeout=3.0)
        self._thread = None


def open_in_browser(url: str, opener: Optional[Callable[[str], object]] = None) -> Path:
    """Open ``url`` in the web browser without putting its token on the browser's command
    line (every process can read another's in /proc): the browser is given a page that only
    this user can read, which sends it on to ``url``. Returns the page's folder, for the
    caller to remove when it stops."""
    import html
    import tempfile
    import webbrowser

    folder = Path(tempfile.mkdtemp(prefix="bachd-open-"))  # 0700
    page = folder / "open.html"
    descriptor = os.open(page, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    shown = html.escape(url, quote=True)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(f'<!doctype html><meta charset="utf-8"><meta http-equiv="refresh" content="0;url={shown}">'
                     f'<title>bachd</title><p>Opening <a href="{shown}">bachd</a>...</p>\n')
    (opener or webbrowser.open)(page.as_uri())
    return folder


def _quiet_logs(complaints: Complaints) -> None:
    """aiohttp's server loggers speak through :class:`Complaints` only (once per process:
    the latest server's complaints)."""
    handler = _LogToComplaints(complaints)
    for name in ("aiohttp.server", "aiohttp.web", "aiohttp.access", "aiohttp.websocket"):
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.propagate = False


async def read_json(request: web.Request) -> dict:
    try:
        data = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BachdError("the request is not JSON") from None
    if not isinstance(data, dict):
        raise BachdError("the request must be a JSON object")
    return data


async def read_upload(request: web.Request, limit: int = UPLOAD_LIMIT) -> bytes:
    """The whole request body, however it is chunked, and at most ``limit`` bytes (beyond:
    refused as it comes, without reading on)."""
    if request.content_length is not None and request.content_length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length)
    body = bytearray()
    while True:
        chunk = await request.content.read(64 * 1024)
        if not chunk:
            return bytes(body)
        body += chunk
        if len(body) > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=len(body))
