"""The control surface and the studio page over real HTTP and WebSockets (no browser): every
rule of the guard, the live path the panel shares with CC knobs, uploads, presets.

The daemon here is the real one (worker and output threads, the tiny model) on fake MIDI
ports; the browser tests (test_web_browser.py) drive the same pages through JACK."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path

import mido
import pytest

from bachd.live.daemon import Daemon, RunOptions
from bachd.live.launch import load_engine
from bachd.presets import LiveSettings
from bachd.web.guard import Guard, cookie_name
from bachd.web.panel import PUSH_HZ, ControlSurface
from bachd.web.studio import Studio
from fakes import FakePorts, melody_file
from webclient import call, token_headers


# --- the guard, rule by rule ------------------------------------------------------------------
def test_the_guard_rules_on_their_own():
    guard = Guard("s3cret", "127.0.0.1", 8123)
    jar = {cookie_name(8123): "s3cret"}
    ok_host = {"Host": "127.0.0.1:8123"}
    assert guard.refusal("GET", "/", ok_host, {"token": "s3cret"}, {}) is None
    assert guard.refusal("GET", "/", {"Host": "localhost:8123"}, {"token": "s3cret"}, {}) is None
    assert "token" in guard.refusal("GET", "/", ok_host, {}, {})
    assert "token" in guard.refusal("GET", "/", ok_host, {"token": "s3cret!"}, {})
    assert "Host" in guard.refusal("GET", "/", {"Host": "attacker.example:8123"}, {"token": "s3cret"}, {})
    assert "Host" in guard.refusal("GET", "/", {"Host": "127.0.0.1:9999"}, {"token": "s3cret"}, {})
    # The cookie of the server on another port is not this one's.
    assert "token" in guard.refusal("GET", "/", ok_host, {}, {cookie_name(8124): "s3cret"})
    assert guard.refusal("GET", "/", ok_host, {}, jar) is None
    # A page of another site never gets an answer, whatever it asks; a WebSocket by its path
    # or by any Upgrade header, however spelled.
    assert "Origin" in guard.refusal("POST", "/api/panic", {**ok_host, "Origin": "https://attacker.example"}, {}, jar)
    assert "Origin" in guard.refusal("GET", "/api/state", {**ok_host, "Origin": "http://127.0.0.1:9999"}, {}, jar)
    assert "Origin" in guard.refusal("GET", "/ws", {**ok_host, "Origin": "null"}, {}, jar)
    assert "Origin" in guard.refusal("GET", "/ws", {**ok_host, "Upgrade": "websocket\u00a0", "Origin": "http://evil"}, {}, jar)
    assert "Origin" in guard.refusal("GET", "/", {**ok_host, "Origin": "http://localhost:8123"}, {}, jar)  # not the Host
    assert guard.refusal("POST", "/api/panic", {**ok_host, "Origin": "http://127.0.0.1:8123"}, {}, jar) is None
    # No Origin (not a browser): to change something or open a socket, the token must be
    # given, not only carried by a cookie.
    assert "cookie" in guard.refusal("POST", "/api/panic", ok_host, {}, jar)
    assert "cookie" in guard.refusal("GET", "/ws", ok_host, {}, jar)
    assert "cookie" in guard.refusal("GET", "/api/state", {**ok_host, "Upgrade": "WebSocket "}, {}, jar)
    assert guard.refusal("POST", "/api/panic", {**ok_host, "X-Bachd-Token": "s3cret"}, {}, {}) is None
    # Any bytes in a header: refused or passed, never an exception.
    surrogates = "s3cret\udcff".encode("utf-8", "surrogateescape").decode("utf-8", "surrogateescape")
    assert "token" in guard.refusal("GET", "/", ok_host, {}, {cookie_name(8123): surrogates})
    assert "token" in guard.refusal("GET", "/", {**ok_host, "X-Bachd-Token": "\udce9\udcff"}, {}, {})
    assert "\\udc" in guard.refusal("GET", "/", {"Host": "\udcff:8123"}, {}, {})  # shown as ASCII
    # Served on every interface: an address or a loopback name is accepted as Host, another
    # name never (DNS rebinding); the Origin must be the Host the page came from.
    wide = Guard("s3cret", "0.0.0.0", 8123)
    assert wide.refusal("GET", "/", {"Host": "192.168.1.20:8123"}, {"token": "s3cret"}, {}) is None
    assert wide.refusal("GET", "/", {"Host": "localhost:8123"}, {"token": "s3cret"}, {}) is None
    assert wide.refusal("GET", "/", {"Host": "[::1]:8123"}, {"token": "s3cret"}, {}) is None
    assert "Host" in wide.refusal("GET", "/", {"Host": "rebind.attacker.example:8123"}, {"token": "s3cret"}, {})
    assert "Host" in wide.refusal("GET", "/", {"Host": "192.168.1.20:9999"}, {"token": "s3cret"}, {})
    lan = {"Host": "192.168.1.20:8123", "X-Bachd-Token": "s3cret"}
    assert wide.refusal("POST", "/api/panic", {**lan, "Origin": "http://192.168.1.20:8123"}, {}, {}) is None
    assert "Origin" in wide.refusal("POST", "/api/panic", {**lan, "Origin": "http://10.0.0.5:8123"}, {}, {})
    assert "Origin" in wide.refusal("POST", "/api/panic", {**lan, "Origin": "http://192.168.1.20:8124"}, {}, {})


def test_the_panel_refuses_every_request_that_breaks_a_rule(panel):
    daemon, surface, ready = panel
    port, token = surface.server.port, surface.server.token
    assert ready == f"Control surface: http://127.0.0.1:{port}/?token={token}"
    assert len(token) >= 43  # 32 random bytes
    good = token_headers(surface)
    body = json.dumps({"temperature": 0.3}).encode()
    refused = {
        "no token": call(port, "GET", "/api/state"),
        "wrong token": call(port, "GET", f"/api/state?token={token[:-1]}x"),
        "foreign Host": call(port, "GET", f"/api/state?token={token}", host=f"attacker.example:{port}"),
        "foreign Origin": call(port, "POST", "/api/settings", {**good, "Origin": "http://attacker.example"}, body),
        "cookie only, no Origin": call(port, "POST", "/api/settings", {"Cookie": f"{cookie_name(port)}={token}"}, body),
        "page without token": call(port, "GET", "/"),
    }
    for why, (status, answer, _) in refused.items():
        assert status == 403 and answer["error"].startswith("refused"), why
    assert daemon.performer.settings.temperature == 0.7  # nothing changed
    status, answer, _ = call(port, "POST", "/api/settings", good, body)
    assert (status, answer) == (200, {"changed": {"temperature": 0.3}})


def test_the_first_page_load_moves_the_token_to_a_cookie(panel):
    _, surface, _ = panel
    port, token = surface.server.port, surface.server.token
    status, _, response = call(port, "GET", f"/?token={token}")
    assert status == 303 and response.getheader("Location") == "/"
    cookie = response.getheader("Set-Cookie")
    jar = {"Cookie": f"{cookie_name(port)}={token}"}
    assert cookie.startswith(f"bachd_token_{port}={token}") and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    status, page, _ = call(port, "GET", "/", jar)
    assert status == 200 and b"control surface" in page
    status, script, _ = call(port, "GET", "/assets/panel.js", jar)
    assert status == 200 and b"WebSocket" in script
    assert call(port, "GET", "/assets/..%2Fpanel.py", jar)[0] == 404


# --- the panel changes what a CC changes, by the same path --------------------------------------
def test_settings_from_the_panel_take_the_cc_path_and_cc_changes_show_in_the_panel(panel):
    daemon, surface, _ = panel
    port, good = surface.server.port, token_headers(surface)
    status, answer, _ = call(port, "POST", "/api/settings", good, json.dumps({"temperature": 0.35, "chord_draws": 2}).encode())
    assert status == 200 and answer["changed"] == {"temperature": 0.35, "chord_draws": 2}
    config = daemon.performer.stream.sampler.config
    assert (config.temperature, config.chord_draws) == (0.35, 2)
    # Checked as flags and presets are: all or nothing, one line.
    status, answer, _ = call(port, "POST", "/api/settings", good, json.dumps({"top_p": 0.5, "temperature": 99}).encode())
    assert status == 400 and answer == {"error": "panel: key 'temperature' must be between 0.05 and 5, got 99"}
    assert daemon.performer.settings.top_p == 0.9
    status, answer, _ = call(port, "POST", "/api/settings", good, json.dumps({"beats_per_bar": 3}).encode())
    assert status == 400 and "cannot change while bachd plays" in answer["error"]
    assert call(port, "POST", "/api/settings", good, b"{not json")[0] == 400
    # A temperature knob turned on a controller: the panel's state says so.
    daemon.router.handle(time.monotonic(), [0xB0, daemon.performer.settings.cc["temperature"], 127])
    state = call(port, "GET", f"/api/state?token={surface.server.token}")[1]
    deadline = time.monotonic() + 1
    while state["settings"]["temperature"] != pytest.approx(1.8) and time.monotonic() < deadline:
        time.sleep(0.05)
        state = call(port, "GET", f"/api/state?token={surface.server.token}")[1]
    assert state["settings"]["temperature"] == pytest.approx(1.8)
    assert state["mode"] == "harmonize" and state["clock"]["kind"] == "internal" and state["clock"]["running"]
    assert set(state["figures"]) >= {"notes_in", "notes_out", "answers", "late_p50_ms", "late_p99_ms", "messages_lost"}
    assert state["cc"]["temperature"] == 21 and state["cc"]["panic"] == 25  # which knob does what


def test_panic_releases_everything_and_mode_switches(panel):
    daemon, surface, _ = panel
    port, good = surface.server.port, token_headers(surface)
    daemon.ask(lambda now: daemon.performer.note_on(now, 72, 90)).result(timeout=2)
    deadline = time.monotonic() + 2
    while daemon.output.voicer.notes_sounding == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert daemon.output.voicer.notes_sounding > 0
    status, _, _ = call(port, "POST", "/api/panic", good, b"{}")
    assert status == 200 and daemon.output.voicer.notes_sounding == 0 and daemon.performer.stats.panics == 1
    status, answer, _ = call(port, "POST", "/api/settings", good, json.dumps({"mode": "continue"}).encode())
    assert status == 200 and daemon.performer.mode == "continue"


def test_presets_from_the_panel_apply_live_and_save_validated(panel, tmp_path, monkeypatch):
    monkeypatch.setenv("BACHD_CONFIG_DIR", str(tmp_path))
    daemon, surface, _ = panel
    port, good = surface.server.port, token_headers(surface)
    status, answer, _ = call(port, "POST", "/api/preset", good, json.dumps({"name": "chorale"}).encode())
    assert status == 200 and answer["preset"] == "chorale"
    assert daemon.performer.mode == "continue"  # the chorale preset's mode, switched live
    call(port, "POST", "/api/settings", good, json.dumps({"temperature": 0.45}).encode())
    status, answer, _ = call(port, "POST", "/api/preset/save", good, json.dumps({"name": "my-live", "description": "warm"}).encode())
    assert status == 200
    saved = tmp_path / "presets" / "my-live.toml"
    from bachd import presets

    values = presets.read(saved)
    assert values["temperature"] == 0.45 and values["mode"] == "continue" and values["description"] == "warm"
    listed = call(port, "GET", "/api/presets", {"X-Bachd-Token": surface.server.token})[1]["presets"]
    assert {"name": "my-live", "user": True} in listed
    for bad in ("../escape", "", "a/b", "x" * 41, 7):
        status, answer, _ = call(port, "POST", "/api/preset/save", good, json.dumps({"name": bad}).encode())
        assert status == 400 and "preset name" in answer["error"]
    assert sorted(p.name for p in (tmp_path / "presets").iterdir()) == ["my-live.toml"]


# --- pushes: bounded, coalesced, and a stalled page never holds anything up -----------------------
def test_the_socket_pushes_at_most_30_states_a_second_and_a_stalled_page_is_dropped(panel):
    import socket

    from aiohttp import ClientSession, WSServerHandshakeError

    daemon, surface, _ = panel
    port, token = surface.server.port, surface.server.token
    url = f"http://127.0.0.1:{port}/ws?token={token}"

    async def listen(seconds: float, origin: str) -> list:
        async with ClientSession() as session:
            async with session.ws_connect(url, headers={"Origin": origin}) as ws:
                received, end = [], time.monotonic() + seconds
                while time.monotonic() < end:
                    try:
                        message = await asyncio.wait_for(ws.receive(), end - time.monotonic())
                    except asyncio.TimeoutError:
                        break
                    received.append((time.monotonic(), json.loads(message.data)))
                return received

    # A page whose socket reads nothing: its pushes pile up, then it is dropped.
    stalled = socket.create_connection(("127.0.0.1", port))
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.sendall((f"GET /ws?token={token} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: http://127.0.0.1:{port}\r\n"
                     "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    daemon.ask(lambda now: daemon.performer.note_on(now, 72, 90))  # something moving on the roll
    received = asyncio.run(listen(2.0, f"http://127.0.0.1:{port}"))
    times = [t for t, _ in received]
    assert len(received) >= 10  # the position moves: states keep coming
    assert len(received) <= 2.0 * PUSH_HZ + 2
    assert min(b - a for a, b in zip(times, times[1:])) >= 0.5 / PUSH_HZ
    assert received[-1][1]["roll"]["notes"]  # the note and its harmony on the roll
    started = time.monotonic()
    assert call(port, "GET", f"/api/state?token={token}")[0] == 200  # the stalled page holds nothing up
    assert time.monotonic() - started < 0.5
    stalled.close()

    async def foreign() -> int:
        async with ClientSession() as session:
            try:
                async with session.ws_connect(url, headers={"Origin": "http://attacker.example"}):
                    return 101
            except WSServerHandshakeError as error:
                return error.status

    assert asyncio.run(foreign()) == 403


def test_a_taken_port_is_a_one_line_error():
    from bachd.errors import BachdError

    first = ControlSurface()
    try:
        with pytest.raises(BachdError, match=f"--ui-port {first.server.port} is in use"):
            ControlSurface(port=first.server.port)
        with pytest.raises(BachdError, match=f"^--port {first.server.port} is in use"):  # bachd ui's own flag
            Studio(Path("unused.keras"), port=first.server.port)
    finally:
        first.close()


# --- the studio --------------------------------------------------------------------------------
def test_studio_uploads_are_capped_and_parsed_like_the_command_line(studio, tmp_path):
    port, headers = studio.server.port, token_headers(studio)
    status, answer, _ = call(port, "POST", "/api/upload", headers, b"\0" * (2 * 1024 * 1024 + 1))
    assert status == 413 and answer == {"error": "too large: uploads are limited to 2 MB"}
    status, answer, _ = call(port, "POST", "/api/upload", headers, b"MThd\0\0\0\6\0\1\0\2\1\xe0MTrk\xff\xff")
    assert status == 400 and answer["error"].startswith("the uploaded file: not a readable MIDI file")
    assert "\n" not in answer["error"] and str(studio.folder) not in answer["error"]
    empty = tmp_path / "empty.mid"
    mido.MidiFile().save(str(empty))
    status, answer, _ = call(port, "POST", "/api/upload", headers, empty.read_bytes())
    assert status == 400 and answer == {"error": "the uploaded file: no notes to play"}
    assert list(studio.folder.iterdir()) == []  # nothing refused is kept
    # The server is still there for the next request.
    assert call(port, "GET", "/api/settings", headers)[0] == 200


def test_studio_harmonizes_an_uploaded_melody_into_four_voices(studio, tmp_path):
    port, headers = studio.server.port, token_headers(studio)
    melody = melody_file(tmp_path / "melody.mid", [72, 74, 76, 74, 72, 71, 72], bpm=100)
    status, answer, _ = call(port, "POST", "/api/upload", headers, Path(melody).read_bytes())
    assert status == 200 and answer["notes"] == 7
    request = {"action": "harmonize", "upload": answer["upload"], "settings": {"temperature": 0.5, "rng_seed": 4}}
    status, result, _ = call(port, "POST", "/api/make", headers, json.dumps(request).encode())
    assert status == 200, result
    status, midi, response = call(port, "GET", result["midi"] + "?download=1", headers)
    assert status == 200 and response.getheader("Content-Type") == "audio/midi" and "attachment" in response.getheader("Content-Disposition")
    path = tmp_path / "out.mid"
    path.write_bytes(midi)
    channels = {m.channel for m in mido.MidiFile(str(path)) if m.type == "note_on" and m.velocity > 0}
    assert channels == {0, 1, 2, 3}
    # The melody (channel 1, under it the player's own soprano) and alto, tenor, bass, on the roll too.
    assert {n[0] for n in result["notes"]} == {0, 2, 3, 4}
    status, wav, response = call(port, "GET", result["wav"], headers)
    assert status == 200 and wav[:4] == b"RIFF" and wav[8:12] == b"WAVE" and result["seconds"] > 1
    # Bad requests: one line each.
    for bad, why in [({"action": "sing", "upload": answer["upload"]}, "action must be"),
                     ({"action": "harmonize", "upload": "../../etc/passwd"}, "upload is gone"),
                     ({"action": "harmonize", "upload": answer["upload"], "settings": {"record": "/tmp/x.mid"}}, "settings may name only"),
                     ({"action": "harmonize", "upload": answer["upload"], "settings": {"temperature": -1}}, "studio: key 'temperature'")]:
        status, error, _ = call(port, "POST", "/api/make", headers, json.dumps(bad).encode())
        assert status == 400 and why in error["error"], error
    assert call(port, "GET", "/api/result/0123456789abcdef.mid", headers)[0] == 404


@pytest.mark.parametrize("action", ["continue", "generate"])
def test_studio_continues_and_generates_from_a_chorale(studio, tmp_path, action):
    port, headers = studio.server.port, token_headers(studio)
    status, listed, _ = call(port, "GET", "/api/chorales", headers)
    assert status == 200 and "269" in listed["chorales"] and len(listed["chorales"]) > 300
    request = {"action": action, "chorale": "269", "bars": 2, "preset": "chorale", "settings": {"rng_seed": 1}}
    status, result, _ = call(port, "POST", "/api/make", headers, json.dumps(request).encode())
    assert status == 200, result
    path = tmp_path / "out.mid"
    path.write_bytes(call(port, "GET", result["midi"], headers)[1])
    parsed = mido.MidiFile(str(path))
    if action == "continue":  # the chorale's first four bars as the call, then a two-bar answer in four voices
        assert "a call of" in result["summary"] and "1 answer" in result["summary"]
        assert {n[0] for n in result["notes"]} >= {0, 1, 2, 3, 4}
    else:  # the chorale as the seed (kept in the file), two bars after it
        assert result["summary"].startswith("wrote the result:")
        assert [m.text for t in parsed.tracks for m in t if m.type == "marker"] == ["bachd"]
        assert {n[0] for n in result["notes"]} == {1, 2, 3, 4}
    status, error, _ = call(port, "POST", "/api/make", headers, json.dumps({**request, "chorale": "9999"}).encode())
    assert status == 400 and "no chorale BWV 9999" in error["error"]
    assert sorted(p.suffix for p in studio.folder.iterdir()) == [".mid", ".musicxml", ".svg", ".wav"]  # the result only


def test_served_on_every_interface_it_still_refuses_names(tiny_model_path):
    page = Studio(Path(tiny_model_path), host="0.0.0.0")
    page.start()
    try:
        port, token = page.server.port, page.server.token
        assert page.url == f"http://127.0.0.1:{port}/?token={token}"  # what to open here
        assert call(port, "GET", f"/api/settings?token={token}")[0] == 200
        assert call(port, "GET", f"/api/settings?token={token}", host=f"192.0.2.7:{port}")[0] == 200  # another computer
        assert call(port, "GET", f"/api/settings?token={token}", host=f"bachd.attacker.example:{port}")[0] == 403
    finally:
        page.close()


def test_studio_keeps_only_the_newest_uploads(studio, tmp_path, monkeypatch):
    import bachd.web.studio as studio_module

    monkeypatch.setattr(studio_module, "KEEP_RESULTS", 3)
    port, headers = studio.server.port, token_headers(studio)
    body = Path(melody_file(tmp_path / "m.mid", [72, 74])).read_bytes()
    ids = [call(port, "POST", "/api/upload", headers, body)[1]["upload"] for _ in range(5)]
    assert sorted(p.name for p in studio.folder.iterdir()) == sorted(f"upload-{i}.mid" for i in ids[-3:])
    status, answer, _ = call(port, "POST", "/api/make", headers, json.dumps({"action": "harmonize", "upload": ids[0]}).encode())
    assert status == 400 and answer["error"] == "that upload is gone; upload the file again"


def test_on_the_way_out_every_note_is_released_before_the_panel_closes(tiny_model_path):
    """A companion (the panel) is closed only once bachd has released what it sounds: a page
    never delays the note-offs; its ready-line part is in the ready line."""

    class Watcher:
        def start(self, daemon):
            self.daemon = daemon
            return "Watching."

        def close(self):
            self.sounding = self.daemon.output.voicer.notes_sounding
            self.note_ons = sum(1 for m in self.daemon.ports.sent if m[0] & 0xF0 == 0x90 and m[2] > 0)

    watcher = Watcher()
    settings = LiveSettings(mode="harmonize", bpm=120.0, rng_seed=3)
    daemon = Daemon(RunOptions(settings=settings, model_path=Path(tiny_model_path)), FakePorts(),
                    load_engine(tiny_model_path, "numpy"), companions=(watcher,))

    def play():
        time.sleep(0.3)
        daemon.ask(lambda now: daemon.performer.note_on(now, 72, 90)).result(timeout=2)
        deadline = time.monotonic() + 2
        while daemon.output.voicer.notes_sounding == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        daemon.stopping.set()  # as a signal does, with the chord still sounding

    player = threading.Thread(target=play)
    player.start()
    lines = []
    assert daemon.serve(on_ready=lines.append) == 0
    player.join()
    assert lines[0].endswith("Watching. Ctrl-C to stop.")
    assert watcher.note_ons >= 3 and watcher.sounding == 0
