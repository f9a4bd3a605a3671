"""Continue mode (call and response): listen while the player plays, feeding each closed
step into the model; when the call ends (a gap of ``listen_gap`` beats, or the end-of-call
CC), answer with ``response_bars`` bars on the next beat or bar, then listen again.

A step is fed to the model once its window has closed (half a step after it), so the
model's state always follows the player and an answer starts within one grid step. Playing
over an answer stops it (unless ``allow_overlap``), keeping only what sounded.

An answer opens on a full chord: at its first step no voice may rest. While the player
calls, bachd's own alto, tenor and bass are drawn but not played, and after a silence the
model often lets them rest under the melody, which Bach almost never writes; carried into the
answer, that would open it on the soprano alone (docs/figures.md).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from bachd.live.modes import ModeHost
from bachd.live.player import PlayedNote
from bachd.live.scheduler import Frame
from bachd.live.stream import Context
from bachd.model.sampling import NO_REST
from bachd.music import encoding
from bachd.presets import LiveSettings

V = encoding.NUM_VOICES


@dataclass
class Answer:
    start: int
    end: int
    next: int
    velocity: int
    snapshots: dict[int, Context] = field(default_factory=dict)
    closed: bool = False  # the final note-offs are scheduled


class ContinueMode:
    name = "continue"
    figures = ("answers", "interrupted")  # answers begun; answers the player came back in over
    player_part, done, melody_only = "Call", "answered", False

    @classmethod
    def beats_after(cls, settings: LiveSettings) -> float:
        return settings.listen_gap + settings.meter.beats_per_bar * (settings.response_bars + 1)

    @classmethod
    def summary(cls, notes_in: int, figures: dict[str, int], notes_out: int) -> str:
        return f"a call of {notes_in} notes, {figures['answers']} answer of {notes_out} notes"
    min_lead_seconds = 0.03  # an answer never starts sooner than this after the call ends

    def __init__(self, host: ModeHost, counts: Counter[str]):
        self.host, self.counts = host, counts
        self.reset()

    def reset(self) -> None:
        """Forget the call being listened to and any answer in progress."""
        self.answer: Optional[Answer] = None
        self._finalized: Optional[int] = None  # last step whose window is closed
        self._call_active = False
        self._call_velocities: list[int] = []
        self._last_release_seconds = -math.inf
        self._trigger = False
        self._interrupt = False

    @property
    def activity(self) -> str:
        return "answering" if self.answer is not None else "listening"

    # --- events -------------------------------------------------------------------------------
    def note_on(self, t_seconds: float, step: int, velocity: int) -> None:
        self._call_velocities.append(velocity)
        if self.answer is not None and not self.host.settings.allow_overlap:
            self._interrupt = True

    def note_off(self, t_seconds: float, note: PlayedNote) -> None:
        self._last_release_seconds = t_seconds

    def end_of_call(self) -> None:
        if self.answer is None:
            self._trigger = True

    def panic(self) -> None:
        if self.answer is not None:
            self.answer = None
            self._finalized = None

    def background(self, now_seconds: float) -> bool:
        return False

    def horizon(self) -> int:
        """Played notes ending before this step are no longer needed."""
        horizon = self.host.stream.grid_step if self.host.stream.grid_step is not None else 0
        return horizon if self._finalized is None else min(horizon, self._finalized)

    # --- time ---------------------------------------------------------------------------------
    def _gap_seconds(self) -> float:
        """The silence after the last note-off that ends a call."""
        return self.host.settings.meter.beats(self.host.settings.listen_gap) * self.host.clock.step_seconds

    def next_wakeup(self, now: float) -> Optional[float]:
        p = self.host
        if self._trigger or self._interrupt:
            return now
        if self.answer is not None:
            a = self.answer
            return p.clock.step_time(a.end) if a.next >= a.end else p.clock.step_time(a.next) - p.lookahead_seconds
        finalized = self._finalized if self._finalized is not None else math.floor(p.clock.step_at(now) - 0.5)
        times = [p.clock.step_time(finalized + 1.5)]
        if self._call_active:
            expires = p.player.hold_expires_at()
            if expires is not None:
                times.append(expires)  # a lost note-off ends the call too
            elif not p.player.held:
                times.append(self._last_release_seconds + self._gap_seconds())
        return min(times)

    def update(self, now: float) -> None:
        if self.answer is not None:
            if self._interrupt:
                self._interrupt_answer(now)
            else:
                self._step_answer(now)
                return
        self._interrupt = False
        if self.host.player.expire(now) is not None:  # held keys with no note-on for max_hold_beats: released
            self._last_release_seconds = max(self._last_release_seconds, now)
        self._finalize_steps(now)
        held = self.host.player.held
        gap_over = self._call_active and not held and now >= self._last_release_seconds + self._gap_seconds()
        if self._trigger or gap_over:
            self._trigger = False
            if self._call_active or self.host.stream.grid_step is not None:
                self._start_answer(now)

    def _finalize_steps(self, now: float, through: Optional[int] = None) -> None:
        p = self.host
        closed = math.floor(p.clock.step_at(now) - 0.5) if through is None else through
        if self._finalized is None or closed - self._finalized > 64:
            self._finalized = closed - 1
        for step in range(self._finalized + 1, closed + 1):
            known = p.player.known(step, p.stream.last)
            if known:
                p.stream.feed(step, known, pad="rest", max_pad=p.settings.steps_per_bar)
                self._call_active = True
        self._finalized = max(self._finalized, closed)

    def _start_answer(self, now: float) -> None:
        p = self.host
        # The call is over: whatever is still held ends now, and the open step is fed too.
        current = round(p.clock.step_at(now))
        p.player.release_all(current)
        self._finalize_steps(now, through=current if p.player.known(current, p.stream.last) else current - 1)
        unit = p.settings.steps_per_bar if p.settings.start_on == "bar" else encoding.STEPS_PER_BEAT
        first = math.ceil(p.clock.step_at(now + self.min_lead_seconds))
        first = -(-first // unit) * unit
        if p.settings.velocity == "follow":
            velocity = int(np.mean(self._call_velocities)) if self._call_velocities else p.player.last_velocity
        else:
            velocity = int(p.settings.velocity)
        steps = p.settings.meter.bars(p.settings.response_bars)
        self.answer = Answer(first, first + steps, first, velocity)
        self._call_active = False
        self._call_velocities = []
        self.counts["answers"] += 1
        self._compute_answer_step(now)  # the first step is ready long before it is due
        p.stream.prepare()

    def _step_answer(self, now: float) -> None:
        p, a = self.host, self.answer
        assert a is not None
        while a.next < a.end and p.clock.step_time(a.next) - p.lookahead_seconds <= now:
            self._compute_answer_step(now)
        if a.next >= a.end and not a.closed:
            rests = [Frame(v, encoding.REST) for v in range(V)]
            p.out.schedule(p.clock.step_time(a.end), rests, "answer")
            a.closed = True
        if a.next > a.start:
            p.stream.prepare()
        if now >= p.clock.step_time(a.end):
            self.answer = None
            self._finalized = a.end - 1
            # notes the player holds over the end of an overlapped answer start afresh
            for note in p.player.held.values():
                note.on_step = max(note.on_step, a.end)

    def _compute_answer_step(self, now: float) -> None:
        p, a = self.host, self.answer
        assert a is not None
        a.snapshots[a.next] = p.stream.snapshot()
        opening = NO_REST if a.next == a.start else None  # an answer opens on four voices
        tokens = p.stream.feed(a.next, {}, restrict=opening, pad="hold", max_pad=encoding.STEPS_PER_BEAT - 1)
        frames = [Frame(v, int(tokens[v]), a.velocity) for v in range(V)]
        p.out.schedule(p.clock.step_time(a.next), frames, "answer", watch=a.next == a.start)
        a.next += 1

    def _interrupt_answer(self, now: float) -> None:
        """The player came back in: stop the answer cleanly and keep only what sounded."""
        p, a = self.host, self.answer
        assert a is not None
        self._interrupt = False
        self.counts["interrupted"] += 1
        p.out.cancel("answer")
        p.out.release(range(V))
        unsounded = [s for s in sorted(a.snapshots) if p.clock.step_time(s) > now]
        if unsounded:
            p.stream.restore(a.snapshots[unsounded[0]])
        self.answer = None
        self._finalized = math.floor(p.clock.step_at(now) - 0.5) - 1
        self._finalize_steps(now)
