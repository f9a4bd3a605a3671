"""A recording of a live session as a Standard MIDI File (``bachd run --record``).

What the player plays goes on a track of its own, on the channels it came on; soprano, alto,
tenor and bass each on their own track and channel (1-4), as bachd's other files have them;
the tempo as bachd heard it (its clock's estimate under MIDI clock), the meter, and a marker
where each answer begins. Times are the moments messages went out or came in.

The calls that note what happened (:meth:`Recorder.voice`, :meth:`Recorder.player`,
:meth:`Recorder.answer`, :meth:`Recorder.tempo`) only append to a list under a lock, so the
MIDI threads never wait on the disk. :meth:`Recorder.write` renders the file and replaces the
old one atomically, so a valid file is there at every moment; notes still sounding are ended
at the moment of writing in the file, never in the recording. :meth:`Recorder.finish` ends
whatever still sounds and writes the last file: the daemon calls it on every way out.
"""

from __future__ import annotations

import datetime
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import mido

from bachd.errors import BachdError
from bachd.music.encoding import VOICES
from bachd.outputs import MIDI_SUFFIXES, SCORE_SUFFIXES

TICKS_PER_BEAT = 480
VOICE_CHANNELS = (0, 1, 2, 3)
MIN_TEMPO_CHANGE_BPM = 0.05  # smaller wobbles of a followed clock are not tempo changes


def recording_path(target: str, now: Callable[[], datetime.datetime] = datetime.datetime.now) -> Path:
    """The file to record to: ``target`` itself (a .mid file), or in the folder ``target``
    (one that exists, or a name ending in '/') a new file named by the time."""
    path = Path(os.path.expanduser(target))
    if path.is_dir() or target.endswith(("/", os.sep)):
        path.mkdir(parents=True, exist_ok=True)
        return path / f"bachd-{now():%Y%m%d-%H%M%S}.mid"
    if path.suffix.lower() not in (*MIDI_SUFFIXES, *SCORE_SUFFIXES):
        raise BachdError(f"--record must name a .mid, .musicxml or .mxl file or a folder, got {target}")
    return path


@dataclass(frozen=True)
class _Event:
    t_seconds: float
    track: int  # 0: the conductor (tempo, markers), 1: the player, 2-5: soprano..bass
    kind: str  # "on", "off", "tempo", "marker"
    channel: int = 0
    pitch: int = 0
    value: float = 0  # velocity, bpm
    text: str = ""


class Recorder:
    """Records to ``path`` (a MIDI file); given a ``.musicxml`` or ``.mxl`` name, it records the
    MIDI file beside it (same name, ``.mid``) as it plays and writes the score from it once,
    at :meth:`finish`, off the live path."""

    def __init__(self, path: Path, start_seconds: float, bpm: float, beats_per_bar: int = 4):
        path = Path(path)
        self.score_path = path if path.suffix.lower() in SCORE_SUFFIXES else None
        self.path = path.with_suffix(".mid") if self.score_path else path
        self.start_seconds = start_seconds
        self.beats_per_bar = beats_per_bar
        self._events: list[_Event] = [_Event(start_seconds, 0, "tempo", value=bpm)]
        self._bpm = bpm
        self._answers = 0
        self._lock = threading.Lock()
        self.writes = 0
        self.finished = False

    # --- what happened (any thread; only an append) --------------------------------------------
    def voice(self, t_seconds: float, voice: int, pitch: int, velocity: int) -> None:
        """bachd's voice ``voice`` struck ``pitch`` (velocity > 0) or let it go (0)."""
        event = _Event(t_seconds, 2 + voice, "on" if velocity else "off", VOICE_CHANNELS[voice], pitch, velocity)
        with self._lock:
            self._events.append(event)

    def player(self, t_seconds: float, channel: int, pitch: int, velocity: int) -> None:
        event = _Event(t_seconds, 1, "on" if velocity else "off", channel, pitch, velocity)
        with self._lock:
            self._events.append(event)

    def answer(self, t_seconds: float) -> None:
        with self._lock:
            self._answers += 1
            self._events.append(_Event(t_seconds, 0, "marker", text=f"answer {self._answers}"))

    def tempo(self, t_seconds: float, bpm: float) -> None:
        if abs(bpm - self._bpm) < MIN_TEMPO_CHANGE_BPM:
            return
        self._bpm = bpm
        with self._lock:
            self._events.append(_Event(t_seconds, 0, "tempo", value=bpm))

    # --- the file --------------------------------------------------------------------------------
    def write(self, now_seconds: float) -> None:
        """Write everything so far, notes still sounding ended at ``now_seconds``, and replace
        the file atomically."""
        with self._lock:
            events = list(self._events)
        midi = render(events, now_seconds, self.beats_per_bar)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        try:
            midi.save(str(tmp))
            os.replace(tmp, self.path)
        except OSError as error:
            raise BachdError(f"cannot write the recording {self.path}: {error.strerror or error}") from None
        self.writes += 1

    def finish(self, now_seconds: float) -> None:
        """The last write: whatever still sounds ends now; then the score, if one was asked for."""
        self.write(now_seconds)
        if self.score_path is not None:
            self._write_score()
        self.finished = True

    def _write_score(self) -> None:
        """The recording as a chorale score: what the player played joins the soprano (the
        melody harmonized, or the calls between the answers), bachd's voices under it."""
        from bachd.music.midifile import grid_of_midi
        from bachd.music.score import write_score

        assert self.score_path is not None
        midi = mido.MidiFile(str(self.path))
        player, soprano, *lower = midi.tracks[1:]
        voices = mido.MidiFile(type=1, ticks_per_beat=midi.ticks_per_beat,
                               tracks=[mido.merge_tracks([player, soprano]), *lower])
        pitches, attacks, _ = grid_of_midi(voices, str(self.path))
        try:
            write_score(pitches, attacks, self.score_path, beats_per_bar=self.beats_per_bar, bpm=self._bpm,
                        title=f"Recorded with bachd, {datetime.datetime.now():%Y-%m-%d %H:%M}")
        except OSError as error:
            raise BachdError(f"cannot write the score {self.score_path}: {error.strerror or error}") from None


def render(events: list[_Event], end_seconds: float, beats_per_bar: int = 4) -> mido.MidiFile:
    """A type-1 file: the conductor track, the player's, then one per voice. Notes left on at
    ``end_seconds`` are ended there."""
    events = sorted(events, key=lambda e: (e.t_seconds, e.kind == "on"))  # at one moment: offs first
    first = next(e for e in events if e.kind == "tempo")
    since_seconds, since_ticks, bpm = first.t_seconds, 0.0, first.value

    def ticks(t_seconds: float) -> int:
        """Seconds → ticks at the tempo in force since the last change (events come in order)."""
        return round(since_ticks + max(0.0, t_seconds - since_seconds) * bpm / 60 * TICKS_PER_BEAT)

    names = ["bachd", "player", *VOICES]
    timed: list[list[tuple[int, mido.Message | mido.MetaMessage]]] = [[] for _ in names]
    timed[0].append((0, mido.MetaMessage("time_signature", numerator=beats_per_bar, denominator=4)))
    sounding: dict[tuple[int, int, int], int] = {}  # (track, channel, pitch) → times struck
    for event in events:
        at = ticks(event.t_seconds)
        if event.kind == "tempo":
            timed[0].append((at, mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(event.value))))
            since_seconds, since_ticks, bpm = max(event.t_seconds, since_seconds), float(at), event.value
        elif event.kind == "marker":
            timed[0].append((at, mido.MetaMessage("marker", text=event.text)))
        elif event.kind == "on":
            key = (event.track, event.channel, event.pitch)
            if sounding.get(key):  # struck again while sounding: end it first, so every on has its off
                timed[event.track].append((at, mido.Message("note_off", channel=event.channel, note=event.pitch)))
            sounding[key] = 1
            timed[event.track].append((at, mido.Message("note_on", channel=event.channel, note=event.pitch,
                                                        velocity=max(1, min(127, int(event.value))))))
        else:
            key = (event.track, event.channel, event.pitch)
            if sounding.pop(key, 0):  # an off for a note never struck (or ended already) is dropped
                timed[event.track].append((at, mido.Message("note_off", channel=event.channel, note=event.pitch)))
    end = ticks(end_seconds)
    for (track, channel, pitch) in sorted(sounding):
        timed[track].append((end, mido.Message("note_off", channel=channel, note=pitch)))

    midi = mido.MidiFile(type=1, ticks_per_beat=TICKS_PER_BEAT)
    for name, items in zip(names, timed):
        track = mido.MidiTrack([mido.MetaMessage("track_name", name=name)])
        last = 0
        for at, message in items:  # already in time order
            track.append(message.copy(time=max(0, at - last)))
            last = max(last, at)
        midi.tracks.append(track)
    return midi



class LiveRecording:
    """The recording of a ``bachd run``: bachd's voices and the answers as they are sent,
    the player's notes as the worker reads them, the tempo and a write at least once a bar
    from the main thread, and the last write (and the score) at the end. A failed write is
    said once on stderr, and bachd plays on."""

    def __init__(
        self, path: Path, now_seconds: float, bpm: float, beats_per_bar: int, bar_seconds: Callable[[], float]
    ):
        # The first, empty file now: a place that cannot be written fails before bachd plays.
        self.recorder = Recorder(path, now_seconds, bpm, beats_per_bar)
        self.recorder.write(now_seconds)
        self.path = self.recorder.path
        self.error: Optional[str] = None
        self._bar_seconds = bar_seconds
        self._written_at = now_seconds

    def keep(self, now_seconds: float, bpm: float) -> None:
        """The tempo now, and a write once a bar has passed since the last."""
        self.recorder.tempo(now_seconds, bpm)
        if now_seconds - self._written_at >= self._bar_seconds():
            self._write(now_seconds)
            self._written_at = now_seconds

    def finish(self, now_seconds: float) -> Optional[str]:
        """The last write and the score; what to tell the user, if it was written."""
        self._write(now_seconds, finish=True)
        if not self.recorder.finished:
            return None
        score = f", its score in {self.recorder.score_path}" if self.recorder.score_path else ""
        return f"the session is recorded in {self.recorder.path}{score}"

    def _write(self, now_seconds: float, finish: bool = False) -> None:
        try:
            self.recorder.finish(now_seconds) if finish else self.recorder.write(now_seconds)
        except BachdError as error:
            if self.error is None:
                sys.stderr.write(f"bachd: {error}\n")
            self.error = str(error)
