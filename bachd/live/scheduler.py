"""Output side of the live path: what each voice sounds, when it is sent, and how late.

- :class:`Voicer` turns voice frames ("at this step the alto attacks G4", "the bass rests")
  into MIDI messages, from what each voice is sounding *at the moment of sending*. Because
  the translation happens at the send edge, a cancelled or replaced frame can never leave a
  note hanging: every note-on it sends is in its ledger until the matching note-off is sent.
- :class:`Scheduler` is a time-ordered queue of frames with tags that can be cancelled.
- :class:`Output` puts the two together behind a lock, sends due messages (sleep, then
  a short spin), and records each message's lateness against its due time.

No threads are started here and nothing reads a MIDI port: the daemon runs
:meth:`Output.run` in its output thread, and tests drive :meth:`Output.send_due`
with a manual clock and a recording sink.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Optional

import numpy as np

from bachd.midi import NOTE_OFF, NOTE_ON
from bachd.music import encoding

Message = tuple[int, ...]  # raw MIDI bytes
Sink = Callable[[Message], None]


@dataclass(frozen=True)
class Frame:
    """What one voice does from one grid step on: a token (attack, hold or rest)."""

    voice: int
    token: int
    velocity: int = 80


class Voicer:
    """Frames → note messages, with a ledger of every note bachd has sounding.

    ``channels[v]`` is the 0-based MIDI channel of voice v. Voices that share a channel
    and a pitch share one sounding note: it is struck once and released when the last of
    them lets go, so one voice's note-off never cuts another voice's note.
    """

    def __init__(self, channels: tuple[int, ...] = (0, 1, 2, 3)):
        self.channels = tuple(channels)
        self.sounding: list[Optional[int]] = [None] * len(self.channels)  # pitch per voice
        # Told of each voice's own notes, (voice, pitch, velocity; 0: released), whatever the
        # channels share: the session recording.
        self.listener: Optional[Callable[[int, int, int], None]] = None
        self.ledger: Counter[tuple[int, int]] = Counter()  # (channel, pitch) → voices holding it

    def frame(self, frame: Frame) -> list[Message]:
        token, voice = frame.token, frame.voice
        current = self.sounding[voice]
        if encoding.is_pitch_token(token):
            pitch = encoding.token_pitch(token)
            if encoding.is_hold(token) and current == pitch:
                return []
            messages = self._release(voice)
            channel = self.channels[voice]
            self.sounding[voice] = pitch
            if self.listener is not None:
                self.listener(voice, pitch, max(1, min(127, int(frame.velocity))))
            self.ledger[(channel, pitch)] += 1
            if self.ledger[(channel, pitch)] == 1:
                messages.append((NOTE_ON | channel, pitch, max(1, min(127, int(frame.velocity)))))
            return messages
        return self._release(voice)

    def release_all(self) -> list[Message]:
        messages = []
        for voice in range(len(self.channels)):
            messages += self._release(voice)
        return messages

    def _release(self, voice: int) -> list[Message]:
        pitch = self.sounding[voice]
        if pitch is None:
            return []
        self.sounding[voice] = None
        if self.listener is not None:
            self.listener(voice, pitch, 0)
        key = (self.channels[voice], pitch)
        self.ledger[key] -= 1
        if self.ledger[key] > 0:
            return []
        del self.ledger[key]
        return [(NOTE_OFF | key[0], pitch, 0)]

    @property
    def notes_sounding(self) -> int:
        return len(self.ledger)


class Scheduler:
    """A time-ordered queue of (due time, frame) with tags for cancelling."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, str, Frame]] = []
        self._order = itertools.count()

    def push(self, due_seconds: float, frames: Iterable[Frame], tag: str) -> None:
        for frame in frames:
            heapq.heappush(self._heap, (due_seconds, next(self._order), tag, frame))

    def cancel(self, tag: Optional[str] = None) -> int:
        """Drop pending frames with ``tag`` (all of them if None); returns how many."""
        before = len(self._heap)
        self._heap = [] if tag is None else [item for item in self._heap if item[2] != tag]
        heapq.heapify(self._heap)
        return before - len(self._heap)

    def next_due(self) -> Optional[float]:
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now_seconds: float) -> list[tuple[float, Frame]]:
        due = []
        while self._heap and self._heap[0][0] <= now_seconds:
            item = heapq.heappop(self._heap)
            due.append((item[0], item[3]))
        return due

    def __len__(self) -> int:
        return len(self._heap)


class LatenessStats:
    """The last ``size`` lateness samples (seconds), for p50/p99 on the status line."""

    def __init__(self, size: int = 4096):
        self._samples = np.zeros(size)
        self._count = 0
        self.worst_seconds = 0.0

    def add(self, seconds: float) -> None:
        self._samples[self._count % len(self._samples)] = seconds
        self._count += 1
        self.worst_seconds = max(self.worst_seconds, seconds)

    @property
    def count(self) -> int:
        return self._count

    def percentiles_ms(self, *qs: float) -> tuple[float, ...]:
        n = min(self._count, len(self._samples))
        if n == 0:
            return tuple(float("nan") for _ in qs)
        values = np.percentile(self._samples[:n], qs) * 1000.0
        return tuple(float(v) for v in values)

    def samples_seconds(self) -> np.ndarray:
        n = min(self._count, len(self._samples))
        return np.roll(self._samples, -(self._count % len(self._samples)))[-n:] if n else np.zeros(0)


class Output:
    """The thread-safe output edge: schedule frames, play them now, cancel, silence.

    ``sink`` sends one raw MIDI message. Lateness is recorded for scheduled frames only:
    frames played at once (harmony answering a note) have no grid time to be late against.
    """

    def __init__(
        self, sink: Sink, voicer: Voicer, now: Callable[[], float] = time.monotonic, spin_seconds: float = 0.0003
    ):
        self._sink = sink
        self.voicer = voicer
        self._now = now
        self._spin_seconds = spin_seconds
        self.scheduler = Scheduler()
        self.lateness = LatenessStats()
        self.response = LatenessStats()  # input note → its answer sent, inside bachd
        self.notes_out = 0
        self.first_lateness: list[float] = []  # lateness of watched frames (an answer's first step)
        self._watched: set[float] = set()
        self._lock = threading.RLock()
        self._wake = threading.Condition(self._lock)
        self.observer: Optional[Callable[[float, Frame], None]] = None  # told of each frame sent (the live view)
        self.on_answer: Optional[Callable[[float], None]] = None  # told when an answer's first step goes out
        self.sending_since: Optional[float] = None  # when the message in the sink now was handed to it

    # --- called by the performer -----------------------------------------------------------
    def schedule(self, due_seconds: float, frames: Iterable[Frame], tag: str, watch: bool = False) -> None:
        with self._lock:
            self.scheduler.push(due_seconds, frames, tag)
            if watch:
                self._watched.add(due_seconds)
            self._wake.notify()

    def play_now(self, frames: Iterable[Frame], since_seconds: Optional[float] = None) -> None:
        """Send ``frames`` at once; ``since_seconds`` (when the note they answer arrived)
        records bachd's own response time."""
        with self._lock:
            frames = list(frames)
            for frame in frames:
                self._send_all(self.voicer.frame(frame))
            if since_seconds is not None:
                self.response.add(self._now() - since_seconds)
            if self.observer is not None:
                sent = self._now()
                for frame in frames:
                    self.observer(sent, frame)

    def next_due(self) -> Optional[float]:
        """When the next scheduled frame is due (None: nothing is scheduled)."""
        with self._lock:
            return self.scheduler.next_due()

    def cancel(self, tag: Optional[str] = None) -> None:
        with self._lock:
            self.scheduler.cancel(tag)
            self._wake.notify()

    def release(self, voices: Iterable[int]) -> None:
        with self._lock:
            for voice in voices:
                self._send_all(self.voicer.frame(Frame(voice, encoding.REST)))

    def silence(self, wait_seconds: Optional[float] = None) -> bool:
        """Cancel everything pending and send a note-off for every note sounding. With
        ``wait_seconds``, give up (False) if the output is still busy after that long: a send
        stuck in a MIDI system that stopped taking messages must not keep bachd from exiting."""
        if not self._lock.acquire(timeout=-1 if wait_seconds is None else wait_seconds):
            return False
        try:
            self.scheduler.cancel()
            self._send_all(self.voicer.release_all())
            self._wake.notify()
        finally:
            self._lock.release()
        return True

    def set_channels(self, channels: tuple[int, ...]) -> None:
        """Send the voices on other channels from now on: what sounds is released first."""
        with self._lock:  # re-entrant: silence and the switch are one step for the output thread
            self.silence()
            self.voicer.channels = tuple(channels)

    # --- called by the output thread (or a test) --------------------------------------------
    def send_due(self, now_seconds: float) -> int:
        with self._lock:
            due = self.scheduler.pop_due(now_seconds)
            for due_seconds, frame in due:
                messages = self.voicer.frame(frame)
                if messages:
                    self._send_all(messages)
                    late = self._now() - due_seconds
                    self.lateness.add(late)
                    if due_seconds in self._watched:
                        self._watched.discard(due_seconds)
                        self.first_lateness.append(late)
                        if self.on_answer is not None:
                            self.on_answer(self._now())
            if self.observer is not None:  # after sending: the view never delays a note
                for due_seconds, frame in due:
                    self.observer(due_seconds, frame)
            return len(due)

    def run(self, stop: threading.Event) -> None:
        """Send frames at their due times until ``stop`` is set: wait on a condition until
        ``spin_seconds`` before the next due time, then spin (yielding the GIL) to it."""
        now = self._now
        while not stop.is_set():
            with self._lock:
                due = self.scheduler.next_due()
                wait = 0.05 if due is None else due - now() - self._spin_seconds
                if wait > 0:
                    self._wake.wait(min(wait, 0.05))
                    continue
            while due is not None and now() < due:
                time.sleep(0)
            self.send_due(now())

    def _send_all(self, messages: list[Message]) -> None:
        if not messages:
            return
        self.sending_since = self._now()  # once a batch: the output thread reads the clock no more than it must
        for message in messages:
            self._sink(message)
            if message[0] & 0xF0 == NOTE_ON:
                self.notes_out += 1
        self.sending_since = None

    def stuck_seconds(self, now_seconds: float) -> float:
        """How long the message being sent has been in the MIDI system's hands (0: none is):
        a MIDI system that stopped taking messages shows here, read from any thread."""
        since = self.sending_since
        return 0.0 if since is None else max(0.0, now_seconds - since)
