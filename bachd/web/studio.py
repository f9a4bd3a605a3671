"""The studio page of ``bachd ui``: a MIDI file or a chorale in, bachd's music out, heard in
the page, drawn as a piano roll, downloaded as MIDI and WAV. No MIDI ports.

The page runs the file commands themselves: harmonize and continue play the file through the
live performer (:func:`bachd.files.replay.replay_file`, as ``bachd harmonize`` and ``bachd
continue`` do), generate continues it offline (:func:`bachd.files.commands.generate_file`),
and every WAV is rendered by bachd (:func:`bachd.files.commands.render_file`). The same
presets and settings table as the command line, checked the same way. Jobs run one at a
time on a worker thread, never on the server's event loop. Uploads are capped and parsed by
the command line's own readers; the client never names a file: uploads and results live in
a folder of the run's own, under random names.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import shutil
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Optional

from aiohttp import web

from bachd import presets
from bachd.deadline import Deadline, job_deadline
from bachd.errors import BachdError
from bachd.midi import is_note_on
from bachd.music.midiread import MidiData
from bachd.web.common import add_common_routes, checked_preset_name
from bachd.web.server import WebServer, open_in_browser, read_json, read_upload

ACTIONS = ("harmonize", "continue", "generate")
# The settings a file job reads (the live ones a file performance uses, and generation's); the
# answer's length is the page's "bars".
STUDIO_SETTINGS = ("bpm", "beats_per_bar", "temperature", "top_p", "rhythm_temperature", "key_pull", "inner_pull",
                   "minor_pull", "root_pull", "max_chord_beats", "cadence_hold", "away_hold", "chord_draws",
                   "listen_gap", "start_on", "allow_parallels", "rng_seed", "velocity")
KEEP_RESULTS = 32  # the newest uploads and results kept; older ones are deleted (a page can fill no disk)
KEEP_BYTES = 512 * 1024 * 1024  # and the oldest go sooner while the folder holds more than this
JOB_SECONDS = 120.0  # a job past this is stopped (a chorale takes a few seconds; see bachd.deadline)
FOLDER_PREFIX = "bachd-studio-"
CALL_BARS = 4  # continue from a chorale: its melody's first bars are the call
ID = re.compile(r"[0-9a-f]{16}")
RESULT_FILES = ("{}.mid", "{}.wav", "{}.musicxml", "{}.svg", "{}.pdf")
RESULT_TYPES = {"mid": "audio/midi", "wav": "audio/wav", "musicxml": "application/vnd.recordare.musicxml+xml",
                "svg": "image/svg+xml", "pdf": "application/pdf"}


def chorales() -> list[str]:
    """The chorales music21 ships (BWV numbers), in catalogue order."""
    from music21 import corpus

    names = {p.name.split(".")[0].removeprefix("bwv") + ("." + p.name.split(".")[1] if p.name.count(".") > 1 else "")
             for p in corpus.getComposer("bach") if p.name.startswith("bwv")}

    def order(name: str):
        number, _, part = name.partition(".")
        digits = re.match(r"\d+", number)
        return (int(digits.group()) if digits else 0, number, part)

    return sorted(names, key=order)


def notes_of(data: MidiData) -> tuple[list[list], float]:
    """A MIDI file's notes as ``[part, pitch, start, end]`` in seconds (part 0: the melody or
    call; 1-4: soprano to bass, by track name or else channel 1-4), and its length."""
    parts = {"melody": 0, "call": 0, "soprano": 1, "alto": 2, "tenor": 3, "bass": 4}
    named = [parts.get(name.strip().lower()) if name else None for name in data.track_names]
    notes = []
    for note in sorted(data.notes, key=lambda n: (n.track, n.start)):
        part = named[note.track]
        which = part if part is not None else (note.channel + 1 if note.channel < 4 else 0)
        notes.append([which, note.pitch, round(data.seconds(note.start), 4), round(data.seconds(note.end), 4)])
    return notes, data.length_seconds


class Studio:
    def __init__(self, model_path: Path, host: str = "127.0.0.1", port: int = 0, token: Optional[str] = None):
        self.model_path = model_path
        self.server = WebServer(
            "studio.html", self._routes, host, port, token, port_flag="--port"
        )  # a taken port: no folder left behind
        remove_leftovers()
        self.folder = Path(tempfile.mkdtemp(prefix=f"{FOLDER_PREFIX}{os.getpid()}-"))
        self.jobs = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bachd-studio")
        self.job_seconds = JOB_SECONDS
        self._deadlines: set[Deadline] = set()
        self._results: list[str] = []
        self._uploads: list[str] = []
        self._lock = threading.Lock()
        self._chorales: Optional[list[str]] = None

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> None:
        self.server.start()

    def close(self) -> None:
        with self._lock:
            for deadline in self._deadlines:
                deadline.cancel()  # the job under way stops at its next check
        self.server.close()
        self.jobs.shutdown(wait=True, cancel_futures=True)
        shutil.rmtree(self.folder, ignore_errors=True)

    def _routes(self, app: web.Application) -> None:
        add_common_routes(app)
        app.router.add_get("/api/chorales", self._chorales_list)
        app.router.add_get("/api/studio", self._studio_settings)
        app.router.add_post("/api/upload", self._upload)
        app.router.add_post("/api/make", self._make)
        app.router.add_get("/api/result/{id}.{kind}", self._result)

    async def _run(self, function, *args):
        """``function(*args)`` on the job thread, within :attr:`job_seconds`."""
        deadline = Deadline(self.job_seconds, "the job")
        with self._lock:
            self._deadlines.add(deadline)

        def job():
            with job_deadline(deadline):
                return function(*args)

        try:
            return await asyncio.get_running_loop().run_in_executor(self.jobs, job)
        finally:
            with self._lock:
                self._deadlines.discard(deadline)

    async def _studio_settings(self, request: web.Request) -> web.Response:
        """The settings a job reads, in the order the page shows them: the page lists none itself."""
        return web.json_response({"settings": list(STUDIO_SETTINGS), "actions": list(ACTIONS)})

    async def _chorales_list(self, request: web.Request) -> web.Response:
        if self._chorales is None:
            self._chorales = await self._run(chorales)
        return web.json_response({"chorales": self._chorales})

    async def _upload(self, request: web.Request) -> web.Response:
        """A MIDI file as the request body, read to its end within the upload limit, then by
        the bounded reader in memory; only a file that passes is kept, under a random name
        (a broken, empty or oversized one is refused with its one-line reason)."""
        body = await read_upload(request)
        notes = await self._run(self._check_upload, body)
        upload = secrets.token_hex(8)
        (self.folder / f"upload-{upload}.mid").write_bytes(body)
        self._keep(upload, self._uploads, ("upload-{}.mid",))
        return web.json_response({"upload": upload, "notes": notes})

    @staticmethod
    def _check_upload(body: bytes) -> int:
        from bachd.files.replay import read_line
        from bachd.music.midiread import read_bytes

        name = "the uploaded file"
        played = read_line(Path(name), top_line=False, data=read_bytes(body, name))
        return sum(1 for _, message in played.events if is_note_on(message))

    async def _make(self, request: web.Request) -> web.Response:
        """``{"action", "upload" or "chorale", "preset", "settings", "bars"}`` → a result."""
        data = await read_json(request)
        action = data.get("action")
        if action not in ACTIONS:
            raise BachdError(f"action must be one of {', '.join(ACTIONS)}")
        settings = presets.resolve(checked_preset_name(data["preset"]) if data.get("preset") else None)
        given = data.get("settings") or {}
        if not isinstance(given, dict) or any(name not in STUDIO_SETTINGS for name in given):
            raise BachdError(f"settings may name only: {', '.join(STUDIO_SETTINGS)}")
        settings = replace(settings, **presets.validate(given, "studio"))
        bars = data.get("bars", 4)
        if not isinstance(bars, int) or isinstance(bars, bool) or not 1 <= bars <= 64:
            raise BachdError("bars must be a whole number 1-64")
        source = self._source(data)
        try:
            result = await self._run(self._job, action, source, settings, bars)
        except BachdError as error:  # the CLI's one line, without this run's folder in it
            raise BachdError(re.sub(re.escape(str(self.folder)) + r"/\S*", "the uploaded file", str(error))) from None
        return web.json_response(result)

    def _source(self, data: dict) -> tuple[str, str]:
        if data.get("upload") is not None:
            upload = data["upload"]
            if (
                not isinstance(upload, str)
                or not ID.fullmatch(upload)
                or not (self.folder / f"upload-{upload}.mid").exists()
            ):
                raise BachdError("that upload is gone; upload the file again")
            return "upload", upload
        chorale = data.get("chorale")
        if isinstance(chorale, str) and re.fullmatch(r"[0-9]{1,4}[a-z]?(\.[0-9]{1,3}(-[a-z]{1,3})?)?", chorale):
            return "chorale", chorale
        raise BachdError("choose a MIDI file or a chorale")

    def _job(self, action: str, source: tuple[str, str], settings, bars: int) -> dict:
        """Runs on the job thread: the file command, then the WAV, then the roll."""
        result = secrets.token_hex(8)
        midi, wav = self.folder / f"{result}.mid", self.folder / f"{result}.wav"
        try:
            return self._make_result(result, midi, wav, action, source, settings, bars)
        except BaseException:
            for pattern in RESULT_FILES:  # a job that failed or was stopped keeps nothing
                (self.folder / pattern.format(result)).unlink(missing_ok=True)
            raise

    def _make_result(self, result: str, midi: Path, wav: Path, action: str, source: tuple[str, str], settings,
                     bars: int) -> dict:
        from bachd.files.commands import generate_file, render_file
        from bachd.files.replay import replay_file
        from bachd.music.engrave import musescore
        from bachd.music.meter import Meter
        from bachd.sound.soundfont import resolve_sound, sound_name

        said: list[str] = []
        kind, name = source
        if action == "generate":
            seed_file = self.folder / f"upload-{name}.mid" if kind == "upload" else None
            generate_file(
                midi,
                self.model_path,
                settings.sampling(),
                seed_file=seed_file,
                seed_chorale=name if kind == "chorale" else None,
                bars=bars,
                bpm=settings.bpm,
                meter=Meter(settings.beats_per_bar),
                rng_seed=settings.rng_seed,
                include_seed=True,
                say=said.append,
            )
        else:
            melody = (
                self.folder / f"upload-{name}.mid" if kind == "upload" else self._chorale_melody(name, action, settings)
            )
            live = replace(settings, response_bars=bars) if action == "continue" else settings
            try:
                replay_file(action, melody, midi, live, self.model_path, say=said.append)
            finally:
                if kind == "chorale":
                    melody.unlink(missing_ok=True)  # written for this job only
        sound = resolve_sound(settings.soundfont)
        seconds = render_file(midi, wav, sound=sound, programs=settings.programs())
        from bachd.music.midiread import read_file

        data = read_file(midi)  # read once, for the roll and the score
        notes, _ = notes_of(data)
        timemap = self._engrave(result, data, settings, action)
        self._keep(result, self._results, RESULT_FILES)
        summary = said[-1].replace(str(midi), "the result") if said else "done"
        base = f"/api/result/{result}"
        return {"result": result, "summary": summary, "seconds": round(seconds, 2), "sound": sound_name(sound),
                "notes": notes, "midi": f"{base}.mid", "wav": f"{base}.wav", "score": f"{base}.svg",
                "musicxml": f"{base}.musicxml", "pdf": f"{base}.pdf" if musescore() else None, "timemap": timemap}

    def _engrave(self, result: str, data: MidiData, settings, action: str) -> list:
        """The result as a score with its analysis: MusicXML, and SVG by Verovio (the same
        timing as the WAV, so the page's cursor follows the audio); returns the timemap."""
        from bachd.music.engrave import engraved
        from bachd.music.midifile import grid_of
        from bachd.music.score import write_score

        pitches, attacks, _ = grid_of(data)
        title = {"harmonize": "Harmonized by bachd", "continue": "Answered by bachd"}.get(action, "Continued by bachd")
        xml = write_score(pitches, attacks, self.folder / f"{result}.musicxml", beats_per_bar=settings.beats_per_bar,
                          bpm=settings.bpm, title=title, analysis=True)
        svg, timemap = engraved(xml.read_text(encoding="utf-8"))
        (self.folder / f"{result}.svg").write_text(svg, encoding="utf-8")
        return timemap

    def _chorale_melody(self, name: str, action: str, settings) -> Path:
        """The chorale's soprano as a MIDI file: the melody to harmonize, or its first bars as a call."""
        import numpy as np

        from bachd.files.generation import load_seed
        from bachd.music import encoding
        from bachd.music.midifile import write_midi

        seed = load_seed(None, name)
        assert seed is not None  # a chorale by its name
        tokens = np.full_like(seed.tokens, encoding.REST)
        tokens[:, 0] = seed.tokens[:, 0]
        if action == "continue":
            tokens = tokens[: CALL_BARS * settings.steps_per_bar]
        path = self.folder / f"chorale-{secrets.token_hex(8)}.mid"
        write_midi(tokens, path, bpm=settings.bpm, beats_per_bar=settings.beats_per_bar)
        return path

    def _keep(self, name: str, kept: list[str], files: tuple[str, ...]) -> None:
        """Keep ``name`` among the newest :data:`KEEP_RESULTS` of its kind, within
        :data:`KEEP_BYTES` for the whole folder (ten-minute WAVs are 115 MB each); delete the
        oldest. The newest is always kept."""
        with self._lock:
            kept.append(name)
            while len(kept) > KEEP_RESULTS or (len(kept) > 1 and self._bytes() > KEEP_BYTES):
                old = kept.pop(0)
                for pattern in files:
                    (self.folder / pattern.format(old)).unlink(missing_ok=True)

    def _bytes(self) -> int:
        return sum(path.stat().st_size for path in self.folder.iterdir() if path.is_file())

    async def _result(self, request: web.Request) -> web.StreamResponse:
        result, kind = request.match_info["id"], request.match_info["kind"]
        if not ID.fullmatch(result) or kind not in RESULT_TYPES:
            return web.json_response({"error": "no such result"}, status=404)
        path = self.folder / f"{result}.{kind}"
        xml = self.folder / f"{result}.musicxml"
        if kind == "pdf" and not path.exists() and xml.exists():
            from bachd.music.engrave import write_pdf

            await self._run(write_pdf, xml, path)  # engraved on the job thread, the first time it is asked for
        if not path.exists():
            return web.json_response({"error": "that result is gone; make it again"}, status=404)
        mime = RESULT_TYPES[kind]
        disposition = "attachment" if request.query.get("download") else "inline"
        # Streamed from disk (and in ranges, as an audio element asks), never read whole.
        return web.FileResponse(path, headers={"Content-Type": mime,
                                               "Content-Disposition": f'{disposition}; '
                                                                      f'filename="bachd-{result}.{kind}"'})


def remove_leftovers(folder: Optional[Path] = None) -> list[Path]:
    """The folders of studios that were killed before they could clean up (their process is
    gone), removed; returns them. A folder's name carries its studio's process id."""
    removed = []
    for path in Path(folder or tempfile.gettempdir()).glob(f"{FOLDER_PREFIX}*"):
        match = re.fullmatch(re.escape(FOLDER_PREFIX) + r"(\d+)-\w+", path.name)
        if not match or not path.is_dir() or path.stat().st_uid != os.getuid():
            continue
        pid = int(match.group(1))
        if pid == os.getpid() or _alive(pid):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def serve(model_path: Path, host: str, port: int, on_ready=print, open_browser: bool = False) -> int:
    """``bachd ui``: serve the studio until Ctrl-C or SIGTERM."""
    import signal

    studio = Studio(model_path, host, port)
    stop = threading.Event()
    opened: Optional[Path] = None
    previous = {signum: signal.signal(signum, lambda *_: stop.set()) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        studio.start()
        warning = (
            "" if host in ("127.0.0.1", "localhost", "::1") else f" (warning: served on {host}, not only this computer)"
        )
        on_ready(f"bachd studio: {studio.url}{warning} Ctrl-C to stop.")
        if open_browser:
            opened = open_in_browser(studio.url)
        while not stop.wait(0.2):
            pass
    finally:
        studio.close()
        if opened is not None:
            shutil.rmtree(opened, ignore_errors=True)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0
