"""The control surface and the studio against hostile files and neighbours, over real HTTP
(the browser-side attacks are in test_web_browser.py): crafted uploads, chunked bodies, job
limits, headers on every answer, a cookie per server, bytes no header should hold, and a
crowd of idle connections that bring no token."""

from __future__ import annotations

import http.client
import io
import json
import os
import socket
import threading
import time
from pathlib import Path

import mido

from bachd.web import server as web_server
from bachd.web.guard import cookie_name
from bachd.web.server import Complaints, open_in_browser
from bachd.web.studio import Studio, remove_leftovers
from fakes import melody_file, one_note
from webclient import call, token_headers


def upload(studio, body, chunk: int | None = None):
    """POST a file to the studio, whole or in chunks of ``chunk`` bytes (chunked encoding)."""
    connection = http.client.HTTPConnection("127.0.0.1", studio.server.port, timeout=60)
    headers = token_headers(studio)
    if chunk:
        pieces = (body[i: i + chunk] for i in range(0, len(body), chunk))
        connection.request("POST", "/api/upload", body=pieces, headers=headers, encode_chunked=True)
    else:
        connection.request("POST", "/api/upload", body=body, headers=headers)
    response = connection.getresponse()
    answer = json.loads(response.read())
    connection.close()
    return response.status, answer


def big_melody(tmp_path: Path, kilobytes: int) -> bytes:
    """A valid file of seven notes made ``kilobytes`` long by a text event (a score's notes)."""
    path = melody_file(tmp_path / "big.mid", [72, 74, 76, 74, 72, 71, 72], bpm=100)
    mid = mido.MidiFile(str(path))
    for _ in range(kilobytes // 256):  # mido reads a message of 1 MB at most
        mid.tracks[0].insert(0, mido.MetaMessage("text", text="x" * (256 * 1024)))
    mid.tracks[0].insert(0, mido.MetaMessage("text", text="x" * (kilobytes % 256 * 1024)))
    buffer = io.BytesIO()
    mid.save(file=buffer)
    return buffer.getvalue()


def test_uploads_are_read_to_their_end_however_they_are_chunked(studio, tmp_path):
    for kilobytes, chunk in ((96, None), (937, None), (937, 7_000), (1900, 65_536)):
        body = big_melody(tmp_path, kilobytes)
        status, answer = upload(studio, body, chunk)
        assert (status, answer.get("notes")) == (200, 7), (kilobytes, chunk, answer)
    status, answer = upload(studio, b"\0" * (2 * 1024 * 1024 + 1), chunk=100_000)  # no length given
    assert status == 413 and answer == {"error": "too large: uploads are limited to 2 MB"}


def test_crafted_uploads_are_refused_in_one_line_and_never_kept(studio):
    crafted = {
        "beats": one_note(1, 0x0FFFFFFF),  # 37 bytes that once wedged the job thread for good
        "at most 10:00": one_note(480, 480 * 2400, tempo=500_000),  # a 20-minute note
        "ticks_per_beat is 0": one_note(0, 480),
        "SMPTE": one_note(0xE728, 480),
        "a tempo of 0": one_note(480, 480, tempo=0),
    }
    for limit, body in crafted.items():
        status, answer = upload(studio, body)
        assert status == 400 and answer["error"].startswith("the uploaded file: ") and limit in answer["error"], answer
        assert "\n" not in answer["error"]
    assert list(studio.folder.iterdir()) == []
    status, answer = upload(studio, Path(melody_file(studio.folder.parent / "ok.mid", [60, 62])).read_bytes())
    assert status == 200  # the job thread is free for the next file


def make(studio, upload_id: str, **extra):
    request = {"action": "harmonize", "upload": upload_id, "settings": {"rng_seed": 1}, **extra}
    return call(studio.server.port, "POST", "/api/make", token_headers(studio), json.dumps(request).encode())


def test_a_job_past_its_time_limit_is_stopped_and_leaves_nothing(studio, tmp_path):
    long_melody = melody_file(tmp_path / "long.mid", [60, 62, 64, 65, 67, 65, 64, 62] * 40, bpm=100)  # 160 beats
    status, answer = upload(studio, Path(long_melody).read_bytes())
    assert status == 200
    studio.job_seconds = 0.3
    status, refused, _ = make(studio, answer["upload"])
    assert status == 400 and refused["error"] == "the job ran past its limit of 0.3 s; try a shorter file or fewer bars"
    assert [p.name for p in studio.folder.iterdir()] == [f"upload-{answer['upload']}.mid"]  # no half result
    studio.job_seconds = 120.0
    short = melody_file(tmp_path / "short.mid", [72, 71, 72], bpm=100)
    status, answer = upload(studio, Path(short).read_bytes())
    status, result, _ = make(studio, answer["upload"])
    assert status == 200 and result["notes"]


def test_closing_the_studio_cancels_the_job_under_way(tiny_model_path, tmp_path):
    page = Studio(Path(tiny_model_path))
    page.start()
    status, answer = upload(page, Path(melody_file(tmp_path / "l.mid", [60, 62, 64, 65] * 100, bpm=100)).read_bytes())
    outcome: list = []
    request = threading.Thread(target=lambda: outcome.append(make(page, answer["upload"])))
    request.start()
    deadline = time.monotonic() + 30
    while not page._deadlines and time.monotonic() < deadline:  # the job has started
        time.sleep(0.01)
    (running,) = page._deadlines
    page.close()  # returns once the job thread has stopped (it waits for it)
    assert running.cancelled.is_set() and not page.folder.exists()
    request.join(10)
    assert outcome and outcome[0][0] == 400 and outcome[0][1]["error"] == "the job was cancelled"


def test_results_are_streamed_from_disk_in_ranges(studio, tmp_path):
    status, answer = upload(studio, Path(melody_file(tmp_path / "m.mid", [72, 74, 76], bpm=100)).read_bytes())
    status, result, _ = make(studio, answer["upload"])
    size = (studio.folder / f"{result['result']}.wav").stat().st_size
    status, part, response = call(studio.server.port, "GET", result["wav"], {**token_headers(studio), "Range": "bytes=0-99"})
    assert status == 206 and len(part) == 100 and part[:4] == b"RIFF"
    assert response.getheader("Content-Range") == f"bytes 0-99/{size}"


def test_every_answer_forbids_framing_sniffing_and_referrers(panel):
    _, surface, _ = panel
    port, token = surface.server.port, surface.server.token
    jar = {"Cookie": f"{cookie_name(port)}={token}"}
    answers = [call(port, "GET", f"/?token={token}"), call(port, "GET", "/", jar), call(port, "GET", "/assets/panel.js", jar),
               call(port, "GET", "/api/state", jar), call(port, "GET", "/api/state"), call(port, "GET", "/nowhere", jar)]
    assert [a[0] for a in answers] == [303, 200, 200, 200, 403, 404]
    for _, _, response in answers:
        policy = response.getheader("Content-Security-Policy")
        assert "frame-ancestors 'none'" in policy and "default-src 'none'" in policy and "script-src 'self'" in policy
        assert "unsafe" not in policy
        assert response.getheader("X-Frame-Options") == "DENY"
        assert response.getheader("X-Content-Type-Options") == "nosniff"
        assert response.getheader("Referrer-Policy") == "no-referrer"


def test_each_server_keeps_its_own_cookie(panel, studio):
    _, surface, _ = panel
    cookies = {}
    for server in (surface.server, studio.server):
        status, _, response = call(server.port, "GET", f"/?token={server.token}")
        name, value = response.getheader("Set-Cookie").split(";")[0].split("=", 1)
        cookies[server.port] = (name, value)
    (panel_cookie, panel_token), (studio_cookie, studio_token) = cookies.values()
    assert panel_cookie != studio_cookie  # opening the studio no longer overwrites the panel's
    both = {"Cookie": f"{panel_cookie}={panel_token}; {studio_cookie}={studio_token}"}
    assert call(surface.server.port, "GET", "/api/state", both)[0] == 200
    assert call(studio.server.port, "GET", "/api/settings", both)[0] == 200
    # The studio's token in the panel's name is refused: one server's cookie is not another's.
    assert call(surface.server.port, "GET", "/api/state", {"Cookie": f"{panel_cookie}={studio_token}"})[0] == 403


def raw_request(port: int, head: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(head)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    return answer


def test_bytes_no_header_should_hold_are_refused_without_a_traceback(panel, capfd):
    _, surface, _ = panel
    port = surface.server.port
    host = f"Host: 127.0.0.1:{port}\r\n".encode()
    for head in (b"GET /api/state HTTP/1.1\r\n" + host + b"X-Bachd-Token: \xff\xfe\xe9\r\nConnection: close\r\n\r\n",
                 b"GET /api/state HTTP/1.1\r\n" + host + b"Cookie: " + cookie_name(port).encode() + b"=\xc3\x28\xa0\r\nConnection: close\r\n\r\n",
                 b"POST /api/panic HTTP/1.1\r\n" + host + b"Origin: http://\xff\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                 b"GET /api/state?token=%ff%fe HTTP/1.1\r\n" + host + b"Connection: close\r\n\r\n"):
        answer = raw_request(port, head)
        assert answer.startswith(b"HTTP/1.1 403"), answer[:200]
    for _ in range(40):  # a flood of refusals: one line a kind a minute on stderr
        call(port, "GET", "/api/state")
        assert b" 400 " in raw_request(port, b"GARBAGE\r\n\r\n").split(b"\r\n")[0]
    err = capfd.readouterr().err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) <= 6 and len(lines) == len(set(line.split(" (")[0] for line in lines)), lines


def test_complaints_are_one_line_a_kind_a_minute():
    said, now = [], [0.0]
    complain = Complaints(write=said.append, clock=lambda: now[0])
    for _ in range(100):
        complain("refused: Host", "x")
    complain("refused: Origin")
    now[0] = 61.0
    complain("refused: Host", "\udcff")
    assert said == ["bachd: web: refused: Host: x\n", "bachd: web: refused: Origin\n",
                    "bachd: web: refused: Host: \\udcff (99 more in the last minute)\n"]


def test_idle_connections_without_the_token_neither_crowd_out_nor_outlast(panel, monkeypatch):
    """300 connections that send nothing: bachd holds at most SILENT_LIMIT of them (as bare
    sockets), closes each within UNTRUSTED_SECONDS, and a token holder is answered all the while."""
    monkeypatch.setattr(web_server, "UNTRUSTED_SECONDS", 1.0)
    _, surface, _ = panel
    port, token = surface.server.port, surface.server.token
    crowd = []
    for _ in range(300):
        connection = socket.socket()
        connection.setblocking(False)
        connection.connect_ex(("127.0.0.1", port))
        crowd.append(connection)
    for _ in range(5):
        status, _, _ = call(port, "GET", f"/api/state?token={token}")
        assert status == 200
        gate = surface.server.gate
        assert len(gate.silent) <= web_server.SILENT_LIMIT and len(gate.untrusted) <= web_server.UNTRUSTED_LIMIT
    open_ones = set(crowd)
    deadline = time.monotonic() + 30
    while open_ones and time.monotonic() < deadline:  # each is closed by bachd: it reads as EOF
        for connection in list(open_ones):
            try:
                if connection.recv(1) == b"":
                    open_ones.discard(connection)
            except BlockingIOError:
                pass
            except OSError:
                open_ones.discard(connection)
        time.sleep(0.05)
    for connection in crowd:
        connection.close()
    assert not open_ones, f"{len(open_ones)} idle connections still open"


def test_a_studio_folder_left_by_a_killed_run_is_removed_at_the_next_start(tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = tmp_path / f"bachd-studio-{2 ** 22 + 12345}-abcd1234"  # no such process
    (dead / "sub").mkdir(parents=True)
    (dead / "sub" / "x.wav").write_bytes(b"0" * 1000)
    alive = tmp_path / f"bachd-studio-{os.getppid()}-abcd1234"
    alive.mkdir()
    other = tmp_path / "bachd-studio-notes"
    other.mkdir()
    assert remove_leftovers() == [dead]
    assert not dead.exists() and alive.exists() and other.exists()


def test_open_puts_no_token_on_the_browsers_command_line(tmp_path):
    url = "http://127.0.0.1:8123/?token=s3cret&x=<y>"
    opened: list[str] = []
    folder = open_in_browser(url, opener=opened.append)
    try:
        (argument,) = opened
        assert "s3cret" not in argument and argument.startswith("file://")
        page = Path(argument[len("file://"):])
        assert (page.stat().st_mode & 0o777, folder.stat().st_mode & 0o777) == (0o600, 0o700)
        text = page.read_text()
        assert 'url=http://127.0.0.1:8123/?token=s3cret&amp;x=&lt;y&gt;"' in text
    finally:
        import shutil

        shutil.rmtree(folder)


def test_a_preset_description_of_any_text_saves_or_is_refused_leaving_nothing(panel, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    _, surface, _ = panel
    port, headers = surface.server.port, token_headers(surface)
    body = json.dumps({"name": "two-lines", "description": 'first line\nsecond "quoted" \\ line\t\x01'}).encode()
    status, answer, _ = call(port, "POST", "/api/preset/save", headers, body)
    assert status == 200, answer
    status, answer, _ = call(port, "GET", "/api/presets/two-lines", headers)
    assert answer["settings"]["description"] == 'first line\nsecond "quoted" \\ line\t\x01'
    status, answer, _ = call(port, "POST", "/api/preset/save", headers, b'{"name": "lone", "description": "\\ud800"}')
    assert status == 400 and answer["error"].startswith("preset 'lone' was not saved") and str(tmp_path) not in answer["error"]
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_one_sigterm_stops_bachd_ui_in_the_middle_of_a_job(tiny_model_path, tmp_path):
    import re
    import signal
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "-m", "bachd", "ui", "--model", str(tiny_model_path)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready = process.stdout.readline()
        url = re.search(r"bachd studio: http://127\.0\.0\.1:(\d+)/\?token=(\S+)", ready)
        assert url, ready
        port, token = int(url.group(1)), url.group(2)
        headers = {"X-Bachd-Token": token, "Content-Type": "application/json", "Origin": f"http://127.0.0.1:{port}"}
        melody = Path(melody_file(tmp_path / "l.mid", [60, 62, 64, 65] * 100, bpm=100)).read_bytes()
        status, answer, _ = call(port, "POST", "/api/upload", headers, melody)
        assert status == 200
        request = {"action": "harmonize", "upload": answer["upload"]}
        def make_it():
            try:
                call(port, "POST", "/api/make", headers, json.dumps(request).encode())
            except OSError:
                pass  # the server went away in the middle of the job: what this test asks for

        job = threading.Thread(target=make_it, daemon=True)
        cpu = cpu_seconds(process.pid)
        job.start()
        while cpu_seconds(process.pid) < cpu + 1.0:  # the job is under way: it is all that computes
            assert job.is_alive() and process.poll() is None
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        assert "Traceback" not in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()


def test_the_studio_folder_stays_within_its_byte_budget(studio, tmp_path, monkeypatch):
    import bachd.web.studio as studio_module

    body = big_melody(tmp_path, 300)  # a valid file of 300 kB
    monkeypatch.setattr(studio_module, "KEEP_BYTES", 2 * len(body) + 1000)
    ids = [upload(studio, body)[1]["upload"] for _ in range(5)]
    assert sorted(p.name for p in studio.folder.iterdir()) == sorted(f"upload-{i}.mid" for i in ids[-2:])
