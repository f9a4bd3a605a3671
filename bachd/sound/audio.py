"""The audio monitor: hear what bachd plays without a DAW. The only module that touches
sound devices (through sounddevice and PortAudio), imported only when audio is used.

The monitor renders the organ of :mod:`bachd.sound.synth` in blocks from one thread and hands
them to PortAudio with blocking writes, instead of rendering inside a PortAudio callback.
Under JACK, a callback runs in JACK's own process thread; a Python callback there must take
the interpreter lock, and whenever the model holds it the whole JACK cycle would stall,
MIDI output included. With writes, PortAudio's thread only copies from its ring buffer, so
audio can never delay MIDI: at worst the monitor underruns, which is counted and shown.

MIDI messages reach the monitor with the time bachd sent (or received) them; each lands in
the block being rendered at a fixed delay after that time, so the monitor keeps the music's
timing instead of snapping events to block edges.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from bachd.errors import BachdError
from bachd.midi import ALL_NOTES_OFF, ALL_SOUND_OFF, CONTROL, NOTE_OFF, NOTE_ON
from bachd.sound.soundfont import DEFAULT_PROGRAMS, make_synth
from bachd.sound.synth import PLAYER, NoteRenderer

BLOCK_FRAMES = 256
RING_SECONDS = 0.01  # PortAudio's write-ahead ring buffer (the latency asked for)


def import_sounddevice():
    """sounddevice, or a one-line error naming what to install."""
    from bachd.quiet import quiet_fd2

    try:
        with quiet_fd2(replay_on_error=False):  # PortAudio probes ALSA and JACK noisily
            import sounddevice
    except (ImportError, OSError) as error:
        raise BachdError(
            "audio needs the PortAudio library, which was not found: install it "
            "(Debian/Ubuntu: apt-get install libportaudio2; macOS: brew install portaudio) "
            f"[{error}]"
        ) from None
    return sounddevice


def output_devices() -> list[dict]:
    """Audio outputs as dicts: index, name, host API, channels, default."""
    sd = import_sounddevice()
    try:
        default = _default_output(sd)
        hostapis, devices = sd.query_hostapis(), sd.query_devices()
    except Exception as error:  # noqa: BLE001 - PortAudioError, or PortAudio not initialized
        raise BachdError(f"cannot list audio devices: {error}") from None
    found = []
    for index, device in enumerate(devices):
        if device["max_output_channels"] > 0:
            found.append({
                "index": index,
                "name": device["name"],
                "hostapi": hostapis[device["hostapi"]]["name"],
                "channels": device["max_output_channels"],
                "default": index == default,
            })
    return found


def _default_output(sd) -> Optional[int]:
    """PortAudio's default output, or the first output of any host API when the default
    host API has none (ALSA without cards on a box that runs JACK, for instance)."""
    try:
        index = sd.default.device[1]
        if index is not None and index >= 0:
            return int(index)
    except Exception:  # noqa: BLE001 - PortAudio reports "no default" in several ways
        pass
    for hostapi in sd.query_hostapis():
        if hostapi["default_output_device"] >= 0:
            return int(hostapi["default_output_device"])
    return None


def resolve_device(spec: Optional[str]) -> int:
    """An output device index from ``--audio-device`` (an index or part of a name)."""
    devices = output_devices()
    if not devices:
        raise BachdError("no audio output device found (on a headless Linux box, start a JACK server: jackd -d dummy)")
    if spec is None:
        chosen = [d for d in devices if d["default"]] or devices[:1]
        return chosen[0]["index"]
    if spec.strip().isdigit():
        index = int(spec)
        if any(d["index"] == index for d in devices):
            return index
    else:
        matches = [d for d in devices if spec.lower() in d["name"].lower()]
        if len(matches) == 1:
            return matches[0]["index"]
        if len(matches) > 1:
            names = ", ".join(f"{d['index']}: {d['name']}" for d in matches)
            raise BachdError(f"audio device {spec!r} is ambiguous: {names}")
    names = ", ".join(f"{d['index']}: {d['name']}" for d in devices)
    raise BachdError(f"no audio output {spec!r}; outputs: {names}")


@dataclass
class MonitorStats:
    blocks: int = 0
    underruns: int = 0
    late_events: int = 0  # events that arrived too late for their place and were played at once
    output_latency_seconds: float = 0.0  # as PortAudio reports it
    ring_seconds: float = 0.0  # bachd's write-ahead buffer on top of it
    device: str = ""


class Monitor:
    """Plays MIDI messages (bachd's output, optionally the player's input) through the organ.

    :meth:`feed` is called from any thread; :meth:`run` is the audio thread's loop, which
    the daemon starts. Tests may call :meth:`render_block` directly.
    """

    def __init__(
        self,
        device: Optional[int] = None,
        sample_rate: Optional[int] = None,
        block_frames: int = BLOCK_FRAMES,
        ring_seconds: float = RING_SECONDS,
        now: Callable[[], float] = time.monotonic,
        soundfont: Optional[Path] = None,
        programs: tuple[int, ...] = DEFAULT_PROGRAMS,
    ):
        self.device, self.block_frames, self.ring_seconds = device, int(block_frames), ring_seconds
        self.soundfont, self.programs = soundfont, programs  # None: the built-in organ
        self._requested_rate = sample_rate
        self.now = now
        self.stats = MonitorStats()
        self._events: collections.deque = collections.deque()
        self.synth: Optional[NoteRenderer] = None
        self._frame = 0  # frames rendered so far
        self._anchor: Optional[tuple[float, int]] = None  # (time, frame) pairing the clocks
        self._delay_frames = 0

    # --- any thread -----------------------------------------------------------------------------
    def feed(self, t_seconds: float, message, player: bool = False) -> None:
        """A raw MIDI message (bytes or list). Only notes and all-notes-off matter."""
        if len(message) < 2:
            return
        status = message[0] & 0xF0
        if (
            status in (NOTE_OFF, NOTE_ON)
            and len(message) >= 3
            or status == CONTROL
            and len(message) >= 3
            and message[1] in (ALL_SOUND_OFF, ALL_NOTES_OFF)
        ):
            self._events.append((t_seconds, bytes(message[:3]), player))

    # --- the audio thread -------------------------------------------------------------------------
    def start_synth(self, sample_rate: int) -> None:
        self.synth = make_synth(self.soundfont, sample_rate, self.programs)
        block_seconds = self.block_frames / sample_rate
        # An event is placed this long after it happened: the write-ahead buffer plus one
        # block, so that it always falls in a block not yet rendered.
        self._delay_frames = int(round((self.ring_seconds + 2 * block_seconds) * sample_rate))

    def render_block(self) -> np.ndarray:
        """Apply the events due in the next block at their offsets and render it."""
        synth, frames = self.synth, self.block_frames
        assert synth is not None  # made when the stream opened
        start = self._frame
        now = self.now()
        if self._anchor is None:
            self._anchor = (now, start)
        rate = synth.sample_rate
        placed = []
        events = self._events
        while events:
            t_seconds, message, player = events[0]
            at = self._anchor[1] + int(round((t_seconds - self._anchor[0]) * rate)) + self._delay_frames
            if at >= start + frames:
                break  # a later block's
            events.popleft()
            if at < start:
                self.stats.late_events += 1
                at = start
            placed.append((at - start, *self._synth_event(message, player)))
        block = synth.render_events(placed, frames)
        self._frame = start + frames
        # Re-anchor when the audio clock has drifted from the monotonic clock by more than
        # a block, so the delay stays what it should be over hours.
        expected = self._anchor[1] + (now - self._anchor[0]) * rate
        if abs(start - expected) > 4 * frames + self._delay_frames:
            self._anchor = (now, start)
        self.stats.blocks += 1
        return block

    @staticmethod
    def _synth_event(message: bytes, player: bool) -> tuple[str, tuple]:
        status, channel = message[0] & 0xF0, message[0] & 0x0F
        key = ("in" if player else "out", channel, message[1])
        if status == CONTROL:
            return "all_off", ()
        if status == NOTE_ON and message[2] > 0:
            registration = PLAYER if player else channel % 4
            return "on", (key, message[1], message[2], registration)
        return "off", (key,)

    def run(self, stop: threading.Event, ready: Optional[threading.Event] = None) -> None:
        """Open the output stream and play until ``stop`` is set; always closes it."""
        sd = import_sounddevice()
        device = self.device if self.device is not None else resolve_device(None)
        info = sd.query_devices(device)
        rate = int(self._requested_rate or info["default_samplerate"])
        try:
            stream = sd.OutputStream(
                device=device, samplerate=rate, channels=2, dtype="float32",
                blocksize=self.block_frames, latency=self.ring_seconds,
            )
        except Exception as error:  # noqa: BLE001 - PortAudio errors come in many types
            raise BachdError(f"cannot open audio output {info['name']!r}: {error}") from None
        self.start_synth(rate)
        self.stats.device = info["name"]
        self.stats.output_latency_seconds = float(stream.latency)
        self.stats.ring_seconds = self.ring_seconds
        try:
            stream.start()
            if ready is not None:
                ready.set()
            while not stop.is_set():
                if stream.write(self.render_block()):
                    self.stats.underruns += 1
            # Fade out whatever still sounds instead of cutting it off.
            synth = self.synth
            assert synth is not None
            synth.all_notes_off()
            for _ in range(int(0.1 * rate / self.block_frames) + 1):
                stream.write(synth.render(self.block_frames))
        finally:
            stream.stop()
            stream.close()
