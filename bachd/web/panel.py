"""The control surface of ``bachd run --ui``: every live setting as a control, mode, presets,
transport, a live piano roll, the ports, Panic and the run's figures.

A view and a remote hand. It changes settings only through :meth:`Daemon.ask`, which has the
worker call :meth:`bachd.live.performer.Performer.change` (the CC knobs' path) between input
batches; it reads :meth:`Daemon.state`, what the status line reads. Pages are pushed over a
WebSocket at most :data:`PUSH_HZ` times a second, one coalesced state for every open page;
a page that cannot keep up is dropped, and nothing the server does waits on the MIDI path or
makes the MIDI path wait.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, Optional

from aiohttp import WSMsgType, web

from bachd import presets
from bachd.errors import BachdError
from bachd.live import ports as midi_ports
from bachd.settings import SETTINGS, check
from bachd.web.common import add_common_routes, checked_preset_name, save_preset
from bachd.web.server import WebServer, read_json

PUSH_HZ = 30
ASK_SECONDS = 2.0  # how long a request waits for the worker to take a change
SEND_SECONDS = 1.0  # a page that takes longer than this to take one state is dropped


class ControlSurface:
    """A :class:`bachd.live.daemon.Companion`: binds at construction, serves once bachd plays."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, token: Optional[str] = None):
        self.server = WebServer("panel.html", self._routes, host, port, token)
        self.daemon: Any = None  # the Daemon, once started
        self.pages = 0  # WebSockets open now
        self._state_text = ""
        self._state_at = 0.0

    @property
    def url(self) -> str:
        return self.server.url

    def start(self, daemon) -> str:
        self.daemon = daemon
        self.server.start()
        warning = (
            ""
            if self.server.host in ("127.0.0.1", "localhost", "::1")
            else f" (warning: served on {self.server.host}, not only this computer: anyone who can reach it and "
            "has the address can play bachd)"
        )
        return f"Control surface: {self.url}{warning}"

    def close(self) -> None:
        self.server.close()

    # --- routes --------------------------------------------------------------------------------
    def _routes(self, app: web.Application) -> None:
        add_common_routes(app)
        app.router.add_get("/api/state", self._state)
        app.router.add_post("/api/settings", self._set)
        app.router.add_post("/api/panic", self._panic)
        app.router.add_post("/api/preset", self._use_preset)
        app.router.add_post("/api/preset/save", self._save_preset)
        app.router.add_get("/api/ports", self._ports)
        app.router.add_post("/api/ports", self._patch)
        app.router.add_get("/ws", self._socket)

    def _state_json(self) -> str:
        """The daemon's state as JSON, built at most PUSH_HZ times a second however many ask."""
        now = time.monotonic()
        if now - self._state_at >= 1.0 / PUSH_HZ or not self._state_text:
            self._state_text = json.dumps(self.daemon.state())
            self._state_at = now
        return self._state_text

    async def _state(self, request: web.Request) -> web.Response:
        return web.Response(text=self._state_json(), content_type="application/json")

    async def _ask(self, job) -> object:
        try:
            return await asyncio.wait_for(asyncio.wrap_future(self.daemon.ask(job)), ASK_SECONDS)
        except asyncio.TimeoutError:
            raise BachdError("bachd did not take the change in time; try again") from None

    async def _set(self, request: web.Request) -> web.Response:
        """``{"temperature": 0.5, ...}``: checked as flags are, all or nothing, then handed
        to the worker in order."""
        values = await read_json(request)
        checked = {}
        for name, value in values.items():
            setting = SETTINGS.get(name)
            if setting is None or not setting.live:
                raise BachdError(f"'{name}' cannot change while bachd plays")
            checked[name] = check(name, value, "panel")
        performer = self.daemon.performer
        if "bpm" in checked and not self.daemon.clock.sets_tempo:  # refused before anything changes
            raise BachdError(self.daemon.clock.tempo_refusal("panel"))

        def change(now_seconds: float):
            return {name: performer.change(name, value, "panel", now_seconds) for name, value in checked.items()}

        changed = await self._ask(change)
        self._state_at = 0.0  # the next push shows it
        return web.json_response({"changed": changed})

    async def _panic(self, request: web.Request) -> web.Response:
        performer = self.daemon.performer
        await self._ask(lambda now_seconds: performer.panic())
        self._state_at = 0.0
        return web.json_response({"panic": True})

    async def _use_preset(self, request: web.Request) -> web.Response:
        """Switch to a preset while playing: its live settings change now; the others (clock,
        meter, seed...) would need a restart and are named in the answer."""
        data = await read_json(request)
        name = data.get("name")
        wanted = presets.resolve(checked_preset_name(name))
        performer = self.daemon.performer
        current = performer.settings
        live = {
            s.name: getattr(wanted, s.name)
            for s in SETTINGS.values()
            if s.live and getattr(wanted, s.name) != getattr(current, s.name)
        }
        if not self.daemon.clock.sets_tempo:
            live.pop("bpm", None)  # the tempo follows the DAW or the Link session
        fixed = [s.name for s in SETTINGS.values() if not s.live and s.name not in ("description", "record")
                 and getattr(wanted, s.name) != getattr(current, s.name)]

        def change(now_seconds: float):
            return {key: performer.change(key, value, "panel", now_seconds) for key, value in live.items()}

        changed = await self._ask(change)
        self._state_at = 0.0
        return web.json_response({"preset": name, "changed": changed, "needs_restart": fixed})

    async def _save_preset(self, request: web.Request) -> web.Response:
        data = await read_json(request)
        description = data.get("description") or ""
        path = save_preset(data.get("name"), self.daemon.performer.settings, description)
        return web.json_response({"saved": data.get("name"), "path": str(path)})

    async def _ports(self, request: web.Request) -> web.Response:
        loop = asyncio.get_running_loop()
        listed = await loop.run_in_executor(None, midi_ports.port_map, self.daemon.ports)
        return web.json_response(listed)

    async def _patch(self, request: web.Request) -> web.Response:
        data = await read_json(request)
        side, other, connect = data.get("side"), data.get("port"), data.get("connect", True)
        if side not in ("input", "output") or not isinstance(other, str) or not isinstance(connect, bool):
            raise BachdError('give {"side": "input" or "output", "port": NAME, "connect": true or false}')
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, midi_ports.patch, self.daemon.ports, side, other, connect)
        listed = await loop.run_in_executor(None, midi_ports.port_map, self.daemon.ports)
        return web.json_response(listed)

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        """The page's live feed: the state, pushed when it changes, at most PUSH_HZ a second."""
        ws = web.WebSocketResponse(heartbeat=10.0, max_msg_size=4096)
        await ws.prepare(request)
        self.pages += 1
        reader = asyncio.ensure_future(self._drain(ws))
        sent = None
        try:
            while not ws.closed and not reader.done():
                text = self._state_json()
                if text != sent:
                    await asyncio.wait_for(ws.send_str(text), SEND_SECONDS)
                    sent = text
                await asyncio.sleep(1.0 / PUSH_HZ)
        except (asyncio.TimeoutError, ConnectionResetError, RuntimeError):
            pass  # a page that cannot keep up, or is gone: dropped
        finally:
            self.pages -= 1
            reader.cancel()
            await ws.close()
        return ws

    @staticmethod
    async def _drain(ws: web.WebSocketResponse) -> None:
        async for message in ws:  # the page sends nothing that matters; read to see it close
            if message.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                break
