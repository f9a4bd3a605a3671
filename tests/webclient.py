"""Helpers and fixtures for the tests of the control surface and the studio: one request
with exactly the headers given, and the servers in this process (the real daemon with its
worker and output threads on fake MIDI ports, the tiny model)."""

from __future__ import annotations

import http.client
import json
import threading
from pathlib import Path

import pytest

from bachd.live.daemon import Daemon, RunOptions
from bachd.live.launch import load_engine
from bachd.presets import LiveSettings
from bachd.web.panel import ControlSurface
from bachd.web.studio import Studio
from fakes import FakePorts


def call(port: int, method: str, path: str, headers: dict | None = None, body: bytes | None = None, host: str | None = None):
    """One request with exactly these headers (``host``: the Host header; default the server's)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
    connection.putheader("Host", host or f"127.0.0.1:{port}")
    for key, value in (headers or {}).items():
        connection.putheader(key, value)
    if body is not None:
        connection.putheader("Content-Length", str(len(body)))
    connection.endheaders(body)
    response = connection.getresponse()
    data = response.read()
    connection.close()
    try:
        parsed = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError):
        parsed = data
    return response.status, parsed, response


def token_headers(surface, origin: bool = True) -> dict:
    headers = {"X-Bachd-Token": surface.server.token, "Content-Type": "application/json"}
    if origin:
        headers["Origin"] = f"http://127.0.0.1:{surface.server.port}"
    return headers


@pytest.fixture
def panel(tiny_model_path):
    """A playing daemon (harmonize, internal clock) with its control surface."""
    settings = LiveSettings(mode="harmonize", bpm=120.0, rng_seed=3)
    daemon = Daemon(RunOptions(settings=settings, model_path=Path(tiny_model_path)), FakePorts(), load_engine(tiny_model_path, "numpy"))
    threads = [threading.Thread(target=daemon._work, daemon=True), threading.Thread(target=daemon._send, daemon=True)]
    for thread in threads:
        thread.start()
    surface = ControlSurface()
    ready = surface.start(daemon)
    yield daemon, surface, ready
    surface.close()
    daemon.stopping.set()
    for thread in threads:
        thread.join(timeout=2)


@pytest.fixture
def studio(tiny_model_path):
    page = Studio(Path(tiny_model_path))
    page.start()
    yield page
    page.close()
