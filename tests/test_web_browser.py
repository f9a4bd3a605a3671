"""The control surface and the studio page in a real browser: Debian's Chromium driven by
Playwright, with ``bachd run --ui`` on a JACK dummy server, played and heard by JACK clients.

Marked ``browser`` (skip them with ``-m 'not browser'``). Without Chromium or Playwright they
skip on a developer machine and fail when CI=true. With BACHD_SCREENSHOTS=DIR the panel and
studio tests leave their screenshots there: the docs' pictures are taken so
(`BACHD_SCREENSHOTS=docs/images .venv/bin/python -m pytest tests/test_web_browser.py`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mido
import pytest

from fakes import melody_file
from jackprobe import Bachd, MidiProbe, is_note_on

pytestmark = [pytest.mark.browser, pytest.mark.slow]
CHROMIUM = ("chromium", "chromium-browser", "google-chrome")


def _unavailable(why: str):
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI runs the browser tests: {why}")
    pytest.skip(why)


@pytest.fixture(scope="module")
def browser():
    executable = next((shutil.which(name) for name in CHROMIUM if shutil.which(name)), None)
    if executable is None:
        _unavailable("no Chromium here (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("Playwright is not installed (pip install playwright)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable,
                                              args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"])
        yield launched
        launched.close()


def expect(locator):
    """Playwright's waiting assertions: they poll without evaluating strings, which the
    pages' policy (no eval) forbids."""
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def panel_url(ready_line: str) -> str:
    match = re.search(r"Control surface: (http://127\.0\.0\.1:\d+/\?token=[A-Za-z0-9_-]{43,})", ready_line)
    assert match, ready_line
    return match.group(1)


def state(url: str) -> dict:
    with urllib.request.urlopen(url.replace("/?token=", "/api/state?token="), timeout=5) as response:
        return json.loads(response.read())


def wait_until(condition, timeout: float = 5.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_the_panel_steers_bachd_while_it_plays(jack, browser, tmp_path):
    bachd = Bachd(jack, "--mode", "continue", "--bpm", "100", "--rng-seed", "5", "--ui")
    probe = MidiProbe()
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        url = panel_url(bachd.ready_line)
        page.goto(url)
        assert "token" not in page.url  # moved to a cookie
        temperature = page.get_by_label("Temperature", exact=True)
        temperature.wait_for()
        # Every live setting is a control, labelled as users see it.
        for label in ("Mode", "Bpm", "Top p", "Rhythm temperature", "Chord draws", "Response bars", "Allow parallels", "Velocity"):
            assert page.get_by_label(label, exact=True).count() == 1, label
        # Temperature: the slider, then the daemon's own state.
        temperature.fill("0.3")
        wait_until(lambda: state(url)["settings"]["temperature"] == 0.3, what="temperature 0.3 in /api/state")
        # A knob on a controller shows in the panel.
        probe.send(0xB0, 21, 127)
        expect(page.locator("#setting-temperature")).to_have_value("1.8")
        # Mode: the choice, then harmony under a melody note, heard through JACK.
        page.get_by_label("Mode", exact=True).select_option("harmonize")
        wait_until(lambda: state(url)["mode"] == "harmonize", what="harmonize mode")
        since = len(probe.received)
        probe.send(0x90, 72, 90)
        hits = probe.wait_for(is_note_on, count=3, since=since, timeout=2.0)
        assert sorted(h.message[0] & 0x0F for h in hits[:3]) == [1, 2, 3]
        # The note played, on the piano roll.
        expect(page.locator("#sounding")).to_contain_text("C5 you")
        expect(page.locator("[data-figure=notes_in]")).to_have_text("1")
        time.sleep(0.6)
        if os.environ.get("BACHD_SCREENSHOTS"):
            page.screenshot(path=str(Path(os.environ["BACHD_SCREENSHOTS"]) / "control-surface.png"))
        # Panic, with the melody note still held and the chord sounding: everything released.
        assert state(url)["figures"]["notes_sounding"] > 0
        page.get_by_role("button", name="Panic").click()
        wait_until(lambda: state(url)["figures"]["panics"] == 1, what="the panic")
        assert not (hanging := probe.quiet()), probe.story(hanging)
        probe.send(0x80, 72, 0)
        # The ports: bachd's own, and the player's port it hears from, connected through JACK.
        page.get_by_role("button", name="Refresh ports").click()
        expect(page.locator("#ports")).to_contain_text("probe-player")
        # Disconnect the player's port in the JACK graph from the panel: bachd hears nothing of
        # it; connect it again: it does.
        page.get_by_role("button", name=re.compile("^Disconnect input probe-player")).click()
        page.get_by_role("button", name=re.compile("^Connect input probe-player")).wait_for()
        heard = state(url)["figures"]["notes_in"]
        probe.send(0x90, 74, 90)
        time.sleep(0.3)
        probe.send(0x80, 74, 0)
        assert state(url)["figures"]["notes_in"] == heard
        page.get_by_role("button", name=re.compile("^Connect input probe-player")).click()
        page.get_by_role("button", name=re.compile("^Disconnect input probe-player")).wait_for()
        probe.send(0x90, 74, 90)
        wait_until(lambda: state(url)["figures"]["notes_in"] == heard + 1, what="the note through the new connection")
        probe.send(0x80, 74, 0)
        code, _, err = bachd.stop()
        assert code == 0, err
    finally:
        page.close()
        bachd.kill()
        probe.close()


def test_the_studio_harmonizes_an_uploaded_melody(browser, tiny_model_path, tmp_path):
    from bachd.paths import DEFAULT_MODEL

    model = DEFAULT_MODEL if os.environ.get("BACHD_SCREENSHOTS") else tiny_model_path  # the docs' picture: real music
    process = subprocess.Popen([sys.executable, "-m", "bachd", "ui", "--model", str(model)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    page = browser.new_page(accept_downloads=True)
    console: list[str] = []
    page.on("console", lambda message: console.append(message.text))
    try:
        ready = process.stdout.readline()
        match = re.search(r"bachd studio: (http://\S+)", ready)
        assert match, ready + process.stderr.read() if process.poll() is not None else ready
        page.goto(match.group(1))
        broken = tmp_path / "broken.mid"
        broken.write_bytes(b"MThd\0\0\0\6\0\1\0\2\1\xe0MTrk\xff\xff")
        page.get_by_label("MIDI file").set_input_files(str(broken))
        expect(page.locator("#message")).to_contain_text("not a readable MIDI file")
        melody = melody_file(tmp_path / "melody.mid", [67, 69, 71, 72, 74, 72, 71, 69, 67], bpm=100)
        page.get_by_label("MIDI file").set_input_files(str(melody))
        expect(page.locator("#source")).to_contain_text("9 notes")
        page.get_by_label("Harmonize").check()
        page.get_by_role("button", name="Make it").click()
        page.get_by_role("link", name="Download MIDI").wait_for(timeout=60000)
        with page.expect_download() as download:
            page.get_by_role("link", name="Download MIDI").click()
        saved = tmp_path / "harmonized.mid"
        download.value.save_as(str(saved))
        notes = [m for m in mido.MidiFile(str(saved)) if m.type == "note_on" and m.velocity > 0]
        assert {m.channel for m in notes} == {0, 1, 2, 3}  # the melody and alto, tenor, bass
        # The engraved score with its analysis, a cursor on the notes as the audio plays, and
        # the MusicXML and PDF to take away.
        expect(page.locator("#score > svg")).to_be_attached()
        assert page.locator("#score g.note").count() >= 9 * 4 - 4
        assert page.locator("#score g.verse").count() > 0  # Roman numerals under the bass
        page.evaluate("document.getElementById('audio').play()")
        expect(page.locator("#score g.playing").first).to_be_attached(timeout=10000)
        page.evaluate("document.getElementById('audio').pause()")
        if os.environ.get("BACHD_SCREENSHOTS"):
            page.screenshot(path=str(Path(os.environ["BACHD_SCREENSHOTS"]) / "studio.png"), full_page=True)
        assert not [line for line in console if "Content Security Policy" in line], console
        with page.expect_download() as download:
            page.get_by_role("link", name="Download MusicXML").click()
        from music21 import converter

        download.value.save_as(str(tmp_path / "harmonized.musicxml"))
        score = converter.parse(str(tmp_path / "harmonized.musicxml"))
        assert len(score.parts) == 2 and any(n.lyrics for n in score.recurse().notes)
        with page.expect_download() as download:
            page.get_by_role("link", name="Download PDF").click()
        download.value.save_as(str(tmp_path / "harmonized.pdf"))
        assert (tmp_path / "harmonized.pdf").read_bytes()[:5] == b"%PDF-"
        assert page.evaluate("document.getElementById('audio').src").endswith(".wav")
        assert page.evaluate("fetch(document.getElementById('audio').src).then(r => r.headers.get('content-type'))") == "audio/wav"
        # A chorale from the corpus, continued by generation with the offline defaults the page
        # switched to.
        first_audio = page.locator("#audio").get_attribute("src")
        page.get_by_label("Chorale (BWV)").select_option("269")
        page.get_by_label("Generate").check()
        assert page.get_by_label("Cadence hold", exact=True).input_value() == "3"  # generate's own default
        page.get_by_label("Bars", exact=True).fill("2")
        page.get_by_role("button", name="Make it").click()
        expect(page.locator("#audio")).not_to_have_attribute("src", first_audio, timeout=60000)
        assert "wrote the result" in page.locator("#summary").text_content()
    finally:
        page.close()
        process.terminate()
        process.communicate(timeout=10)


# --- a page of another site as the attacker ----------------------------------------------------
@pytest.fixture
def attacker():
    """A site on another loopback port (same-site to the browser, as every 127.0.0.1 page is):
    serves whatever page the test puts in ``pages``."""
    import http.server
    import threading

    pages: dict[str, str] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = pages.get(self.path, "").encode()
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", pages
    server.shutdown()
    server.server_close()


def test_a_page_on_another_loopback_port_can_neither_frame_nor_drive_the_panel(browser, panel, studio, attacker):
    from webclient import call

    _, surface, _ = panel
    site, pages = attacker
    own = f"http://127.0.0.1:{surface.server.port}/"
    context = browser.new_context()
    page = context.new_page()
    console: list[str] = []
    page.on("console", lambda message: console.append(message.text))
    try:
        # The musician has the panel and then the studio open: two cookies, neither
        # overwriting the other, and the pages run under their policy with nothing refused.
        page.goto(surface.url)
        page.get_by_role("button", name="Panic").wait_for()
        page.goto(studio.url)
        page.get_by_role("button", name="Make it").wait_for()
        page.goto(own)
        page.get_by_role("button", name="Panic").wait_for()
        assert page.evaluate("fetch('/api/state').then(r => r.status)") == 200
        assert not [line for line in console if "Content Security Policy" in line], console
        # The attacker's page frames the panel (to trick a click into it), posts Panic with the
        # browser's cookies, and opens the panel's WebSocket.
        pages["/"] = f"""<!doctype html><body><iframe id="f" src="{own}" width="800" height="600"></iframe>
<script>
window.outcome = {{}};
fetch("{own}api/panic", {{method: "POST", credentials: "include", mode: "no-cors"}})
  .then(() => window.outcome.post = "sent", () => window.outcome.post = "failed");
const socket = new WebSocket("ws://127.0.0.1:{surface.server.port}/ws");
socket.onopen = () => window.outcome.socket = "open";
socket.onerror = () => window.outcome.socket = window.outcome.socket || "refused";
</script></body>"""
        console.clear()
        attack = context.new_page()
        attack.on("console", lambda message: console.append(message.text))
        attack.goto(site + "/")
        attack.wait_for_function("window.outcome.post && window.outcome.socket")
        assert attack.evaluate("window.outcome.socket") == "refused"
        framed = [frame for frame in attack.frames if frame is not attack.main_frame]
        assert len(framed) == 1
        wait_until(lambda: any("frame-ancestors" in line for line in console), what="Chromium refusing the frame")
        assert not framed[0].url.startswith(own)  # an error page, not the panel
        status, answer, _ = call(surface.server.port, "GET", f"/api/state?token={surface.server.token}")
        assert answer["figures"]["panics"] == 0  # the forged Panic was refused
        attack.close()
    finally:
        context.close()
