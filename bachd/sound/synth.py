"""A small organ for hearing chorales: additive voices rendered in numpy.

Each part has its own registration (the mix of harmonics that makes a stop sound like a
flute or a principal), stored as one band-limited cycle per registration and pitch band and
read with linear interpolation. Notes start and end on raised-cosine envelopes, so nothing
clicks, and every note sums into a stereo buffer with its own pan. The same :class:`Synth`
renders files offline (``bachd render``) and blocks for the live monitor
(:mod:`bachd.sound.audio`); it never touches a sound device itself.

Events land on exact sample offsets inside a block, so offline renders are sample-accurate.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

TABLE_SIZE = 4096
DEFAULT_SAMPLE_RATE = 48000
ATTACK_SECONDS = 0.012
RELEASE_SECONDS = 0.09
PLAYER = 4  # the registration used for what the player plays (the monitor's --monitor-input)

# Relative amplitudes of harmonics 1, 2, 3, ...: soprano a bright principal, alto a flute,
# tenor a softer principal, bass a full open diapason; the player a quiet gedackt (odd
# harmonics), so it stays distinct from bachd's four parts.
REGISTRATIONS: tuple[tuple[float, ...], ...] = (
    (1.0, 0.55, 0.22, 0.25, 0.08, 0.1, 0.03, 0.06),
    (1.0, 0.32, 0.1, 0.06, 0.03),
    (1.0, 0.42, 0.18, 0.12, 0.05, 0.05),
    (1.0, 0.7, 0.35, 0.22, 0.12, 0.08, 0.05, 0.04),
    (1.0, 0.0, 0.25, 0.0, 0.08),
)
PANS = (-0.3, 0.3, -0.15, 0.15, 0.0)  # -1 left … 1 right


def midi_frequency(pitch: float) -> float:
    return 440.0 * 2.0 ** ((pitch - 69) / 12)


_tables: dict[tuple[int, int], np.ndarray] = {}


def wavetable(registration: int, harmonics: int) -> np.ndarray:
    """One cycle of ``registration`` with at most ``harmonics`` partials, peak 1, plus a
    wrap-around sample so interpolation never indexes past the end."""
    key = (registration, harmonics)
    table = _tables.get(key)
    if table is None:
        amplitudes = REGISTRATIONS[registration][: max(1, harmonics)]
        phase = np.arange(TABLE_SIZE + 1) * (2 * np.pi / TABLE_SIZE)
        wave = np.zeros_like(phase)
        for k, a in enumerate(amplitudes):
            wave += a * np.sin((k + 1) * phase)
        table = (wave / np.abs(wave).max()).astype(np.float32)
        _tables[key] = table
    return table


@dataclass(eq=False)  # notes are compared by identity
class _Voice:
    """One sounding note."""

    table: np.ndarray
    increment: float  # table positions per sample
    amplitude: float
    left: float
    right: float
    phase: float = 0.0
    age: int = 0  # samples since the note started
    release_age: Optional[int] = None  # age when its key was released


class NoteRenderer:
    """What the monitor and the file renderers ask of a synthesizer: ``note_on(key, pitch,
    velocity, registration)``, ``note_off(key)``, ``all_notes_off()``, ``render(frames)``;
    this adds rendering a list of timed events."""

    sample_rate: int
    release_seconds: float  # how long a note rings after its note-off: the tail a rendered file keeps

    def note_on(self, key, pitch: int, velocity: int = 90, registration: int = 0) -> None:
        raise NotImplementedError

    def note_off(self, key) -> None:
        raise NotImplementedError

    def all_notes_off(self) -> None:
        raise NotImplementedError

    def render(self, frames: int) -> np.ndarray:
        raise NotImplementedError

    def render_events(self, events: Iterable[tuple[int, str, tuple]], total_frames: int) -> np.ndarray:
        """Render ``total_frames`` samples, applying ``events`` at their sample offsets.

        Each event is ``(offset, kind, args)``: ``("on", (key, pitch, velocity,
        registration))``, ``("off", (key,))`` or ``("all_off", ())``; offsets need not be
        sorted but must lie in ``[0, total_frames]``.
        """
        chunks = list(self.render_blocks(events, total_frames, max(1, total_frames)))
        return np.concatenate(chunks) if len(chunks) > 1 else chunks[0]

    def render_blocks(self, events: Iterable[tuple[int, str, tuple]], total_frames: int,
                      block: int) -> Iterator[np.ndarray]:
        """:meth:`render_events` in pieces of at most ``block`` frames, so a long file is
        rendered in the memory of one piece."""
        position = 0
        for offset, kind, args in sorted(events, key=lambda e: e[0]):
            offset = min(max(int(offset), position), total_frames)
            while offset > position:
                frames = min(block, offset - position)
                yield self.render(frames)
                position += frames
            if kind == "on":
                self.note_on(*args)
            elif kind == "off":
                self.note_off(*args)
            else:
                self.all_notes_off()
        while position < total_frames:
            frames = min(block, total_frames - position)
            yield self.render(frames)
            position += frames
        if total_frames == 0:
            yield self.render(0)


class Synth(NoteRenderer):
    """Polyphonic additive organ. ``note_on``/``note_off`` take a key (any hashable, for
    example (channel, note)), so the same pitch on two channels is two notes, as in MIDI."""

    release_seconds = RELEASE_SECONDS

    def __init__(self, sample_rate: int = DEFAULT_SAMPLE_RATE, gain: float = 0.16, max_notes: int = 32):
        if sample_rate < 8000:
            raise ValueError(f"sample rate {sample_rate} is too low (at least 8000)")
        self.sample_rate = int(sample_rate)
        self.gain = gain
        self.max_notes = max_notes
        self.attack = max(1, round(ATTACK_SECONDS * sample_rate))
        self.release = max(1, round(RELEASE_SECONDS * sample_rate))
        self._sounding: dict[object, _Voice] = {}
        self._releasing: list[_Voice] = []
        self.voices_stolen = 0

    @property
    def active_notes(self) -> int:
        return len(self._sounding) + len(self._releasing)

    def note_on(self, key, pitch: int, velocity: int = 90, registration: int = 0) -> None:
        self.note_off(key)
        frequency = midi_frequency(pitch)
        harmonics = max(1, int(0.45 * self.sample_rate / frequency))
        pan = PANS[registration % len(PANS)]
        angle = (pan + 1) * math.pi / 4  # constant-power panning
        if self.active_notes >= self.max_notes:
            self._steal()
        self._sounding[key] = _Voice(
            table=wavetable(registration % len(REGISTRATIONS), harmonics),
            increment=frequency * TABLE_SIZE / self.sample_rate,
            amplitude=self.gain * (0.45 + 0.55 * min(max(velocity, 1), 127) / 127),
            left=math.cos(angle),
            right=math.sin(angle),
        )

    def note_off(self, key) -> None:
        voice = self._sounding.pop(key, None)
        if voice is not None:
            voice.release_age = voice.age
            self._releasing.append(voice)

    def all_notes_off(self) -> None:
        for key in list(self._sounding):
            self.note_off(key)

    def _steal(self) -> None:
        """Too many notes: the oldest releasing note ends at once, else the oldest held one
        is released (it still fades, so no click)."""
        self.voices_stolen += 1
        if self._releasing:
            self._releasing.pop(0)
        elif self._sounding:
            self.note_off(next(iter(self._sounding)))

    def render(self, frames: int) -> np.ndarray:
        """The next ``frames`` samples, (frames, 2) float32."""
        out = np.zeros((frames, 2), np.float32)
        if frames <= 0:
            return out
        mono = np.empty(frames, np.float32)
        ramp = np.arange(frames, dtype=np.float64)
        finished = []
        for voice in (*self._sounding.values(), *self._releasing):
            positions = voice.phase + voice.increment * ramp
            positions %= TABLE_SIZE
            index = positions.astype(np.int32)
            frac = (positions - index).astype(np.float32)
            table = voice.table
            np.multiply(table[index + 1] - table[index], frac, out=mono)
            mono += table[index]
            ages = voice.age + ramp
            envelope = np.ones(frames)
            if voice.age < self.attack:  # raised-cosine attack from silence
                rising = ages < self.attack
                envelope[rising] = 0.5 - 0.5 * np.cos(np.pi * ages[rising] / self.attack)
            if voice.release_age is not None:  # times a raised-cosine fall to silence
                fading = np.clip((ages - voice.release_age) / self.release, 0.0, 1.0)
                envelope *= 0.5 + 0.5 * np.cos(np.pi * fading)
                if voice.age + frames - voice.release_age >= self.release:
                    finished.append(voice)
            mono *= (envelope * voice.amplitude).astype(np.float32)
            out[:, 0] += mono * voice.left
            out[:, 1] += mono * voice.right
            voice.phase = float((voice.phase + voice.increment * frames) % TABLE_SIZE)
            voice.age += frames
        if finished:
            self._releasing = [v for v in self._releasing if v not in finished]
        return out


# --- MIDI files to audio ------------------------------------------------------------------------
def midi_events(path: str | Path) -> tuple[list[tuple[float, str, tuple]], float]:
    """The note events of a MIDI file in seconds (tempo changes honoured), as
    ``(seconds, kind, args)`` for :meth:`Synth.render_events`, and the file's length.
    Channel c plays with registration c % 4, so bachd's own files (one voice per channel)
    sound as S, A, T, B."""
    from bachd.music.midiread import read_file

    data = read_file(path)
    timed: list[tuple[int, int, str, tuple]] = []  # (tick, order, kind, args): at one tick, offs first
    for note in data.notes:
        key = (note.channel, note.pitch)
        timed.append((note.start, 2, "on", (key, note.pitch, note.velocity, note.channel % 4)))
        timed.append((note.end, 0, "off", (key,)))
    timed.extend((tick, 1, "all_off", ()) for tick, _channel in data.all_off)
    timed.sort(key=lambda e: (e[0], e[1]))
    return [(data.seconds(tick), kind, args) for tick, _, kind, args in timed], data.length_seconds


def _placed(path: str | Path, sample_rate: int, synth: NoteRenderer) -> tuple[list[tuple[int, str, tuple]], int]:
    events, length = midi_events(path)
    tail = synth.release_seconds + 0.05
    total = int(math.ceil((length + tail) * sample_rate))
    placed = [(round(t * sample_rate), kind, args) for t, kind, args in events]
    placed.append((round(length * sample_rate), "all_off", ()))  # a note the file never ends still ends
    return placed, total


def render_midi(
    path: str | Path, sample_rate: int = DEFAULT_SAMPLE_RATE, synth: NoteRenderer | None = None
) -> np.ndarray:
    """A MIDI file rendered with ``synth`` (default: the organ): (frames, 2) float32, with a
    release tail."""
    synth = synth or Synth(sample_rate)
    placed, total = _placed(path, sample_rate, synth)
    return synth.render_events(placed, total)


def render_midi_to_wav(path: str | Path, wav: str | Path, sample_rate: int = DEFAULT_SAMPLE_RATE,
                       synth: NoteRenderer | None = None, each_block: Callable[[], None] | None = None) -> float:
    """A MIDI file rendered into a WAV file a second at a time (the memory of one second,
    however long the file); ``each_block`` is called between seconds (a job's deadline
    check). Returns the seconds written."""
    import wave

    synth = synth or Synth(sample_rate)
    placed, total = _placed(path, sample_rate, synth)
    with wave.open(str(wav), "wb") as handle:
        handle.setnchannels(2)
        handle.setsampwidth(2)
        handle.setframerate(int(sample_rate))
        for block in synth.render_blocks(placed, total, int(sample_rate)):
            if each_block is not None:
                each_block()
            handle.writeframes(_pcm(block).tobytes())
    return total / sample_rate


def _pcm(audio: np.ndarray) -> np.ndarray:
    return (np.clip(audio, -1.0, 1.0) * 32767.0).round().astype("<i2")


def write_wav(path: str | Path, audio: np.ndarray, sample_rate: int) -> None:
    """16-bit PCM WAV (stereo when ``audio`` has two columns), clipped to full scale."""
    import wave

    audio = np.asarray(audio, np.float32)
    channels = 1 if audio.ndim == 1 else audio.shape[1]
    pcm = _pcm(audio)
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(channels)
        handle.setsampwidth(2)
        handle.setframerate(int(sample_rate))
        handle.writeframes(pcm.tobytes())
