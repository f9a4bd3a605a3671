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
import re
import socket
import sys
import threading
from importlib import resources
from typing import Awaitable, Callable, Optional

from aiohttp import web

from bachd.errors import BachdError
from bachd.web.guard import COOKIE, Guard, new_token

UPLOAD_LIMIT = 2 * 1024 * 1024  # bytes: a chorale's MIDI file is a few kB
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ASSET_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".png": "image/png", ".svg": "image/svg+xml"}


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
                raise BachdError(f"{port_flag} {port} is in use; choose another, or leave it out for a free one") from None
            raise BachdError(f"cannot serve on {host}:{port}: {error.strerror or error}") from None
        self.sock.listen(64)
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.guard = Guard(self.token, host, self.port)
        self.assets = _assets()
        self.app = web.Application(middlewares=[self._guarded], client_max_size=UPLOAD_LIMIT + 64 * 1024)
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
        websocket = request.headers.get("Upgrade", "").lower() == "websocket"
        refusal = self.guard.refusal(request.method, request.headers, request.query, request.cookies, websocket)
        if refusal is not None:
            return json_error(refusal, 403)
        if request.path == "/" and "token" in request.query:
            # The token moves from the address bar to a cookie only this page's requests carry.
            response = web.HTTPSeeOther("/")
            response.set_cookie(COOKIE, self.token, httponly=True, samesite="Strict", path="/")
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
            sys.stderr.write(f"bachd: control surface: {type(error).__name__}: {error}\n")
            return json_error(f"internal error: {type(error).__name__}", 500)

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
        runner = web.AppRunner(self.app, handle_signals=False, access_log=None, shutdown_timeout=0.5)
        try:
            loop.run_until_complete(runner.setup())
            loop.run_until_complete(web.SockSite(runner, self.sock).start())
            self._stopped = asyncio.Event()
        except BaseException as error:  # noqa: BLE001
            failure.append(error)
            ready.set()
            return
        ready.set()
        try:
            loop.run_until_complete(self._stopped.wait())
            loop.run_until_complete(asyncio.wait_for(runner.cleanup(), 2.0))
        except BaseException:  # noqa: BLE001 - closing: nothing left to tell
            pass
        finally:
            loop.close()

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


async def read_json(request: web.Request) -> dict:
    try:
        data = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BachdError("the request is not JSON") from None
    if not isinstance(data, dict):
        raise BachdError("the request must be a JSON object")
    return data


async def read_upload(request: web.Request) -> bytes:
    """The request body, at most :data:`UPLOAD_LIMIT` bytes (beyond: refused as it comes)."""
    if request.content_length is not None and request.content_length > UPLOAD_LIMIT:
        raise web.HTTPRequestEntityTooLarge(max_size=UPLOAD_LIMIT, actual_size=request.content_length)
    body = await request.content.read(UPLOAD_LIMIT + 1)
    if len(body) > UPLOAD_LIMIT:
        raise web.HTTPRequestEntityTooLarge(max_size=UPLOAD_LIMIT, actual_size=len(body))
    return body
