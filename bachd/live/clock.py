"""Where the 16th-note grid lies in time: an internal clock, a follower of the DAW's MIDI clock,
or of an Ableton Link session's timeline.

Pure logic on timestamps (seconds of ``time.monotonic()``): nothing here reads the time or
sleeps, so tests drive both clocks with made-up timestamps. Both answer the same questions:
is the transport running, at what time does grid step ``n`` fall, which step is it at time
``t``, and what is the tempo.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from bachd.music.encoding import STEPS_PER_BEAT

CLOCKS_PER_BEAT = 24  # MIDI clock: 24 pulses per quarter note
CLOCKS_PER_STEP = CLOCKS_PER_BEAT // STEPS_PER_BEAT
MIN_BPM, MAX_BPM = 20.0, 320.0


def seconds_per_step(bpm: float) -> float:
    return 60.0 / (bpm * STEPS_PER_BEAT)


class Clock:
    """The interface the performer uses."""

    running: bool

    @property
    def bpm(self) -> float:
        raise NotImplementedError

    def step_time(self, step: float) -> float:
        """Monotonic time (seconds) at which grid step ``step`` falls."""
        raise NotImplementedError

    def step_at(self, t_seconds: float) -> float:
        """The (fractional) grid step at time ``t_seconds``."""
        raise NotImplementedError

    @property
    def step_seconds(self) -> float:
        return seconds_per_step(self.bpm)

    # The transport (MIDI Start, Continue, Stop; Link's start/stop): the internal clock always runs.
    def start(self, t_seconds: float) -> None:
        pass

    def resume(self, t_seconds: float) -> None:
        pass

    def stop(self, t_seconds: float) -> None:
        pass


class InternalClock(Clock):
    """A steady grid at ``bpm`` whose step 0 falls at ``origin_seconds``."""

    def __init__(self, bpm: float, origin_seconds: float):
        self._bpm = _checked_bpm(bpm)
        self.origin_seconds = origin_seconds
        self.running = True

    @property
    def bpm(self) -> float:
        return self._bpm

    def set_bpm(self, bpm: float, now_seconds: float) -> None:
        """Change tempo without moving the grid position at ``now_seconds``."""
        position = self.step_at(now_seconds)
        self._bpm = _checked_bpm(bpm)
        self.origin_seconds = now_seconds - position * self.step_seconds

    def step_time(self, step: float) -> float:
        return self.origin_seconds + step * self.step_seconds

    def step_at(self, t_seconds: float) -> float:
        return (t_seconds - self.origin_seconds) / self.step_seconds


@dataclass
class ClockStats:
    ticks: int = 0
    ignored_ticks: int = 0
    resyncs: int = 0


class MidiClock(Clock):
    """Follows 24-per-quarter MIDI clock with start, stop, continue and song position.

    Tick times are tracked with an alpha-beta filter: the phase follows each tick by
    ``alpha`` of its error and the period by ``beta``, so a DAW's timing jitter (a
    millisecond or two on most systems) does not shake the grid, while a tempo change is
    followed within a beat or two. Ticks closer together than ``min_tick_seconds`` (a clock
    storm, or a duplicated message) are ignored; a tick far off the prediction (a jump in
    tempo, a paused clock) resynchronises the filter instead of dragging it.
    """

    def __init__(self, initial_bpm: float = 120.0, alpha: float = 0.25, beta: float = 0.02, min_tick_seconds: float = 0.002):
        self.period = 60.0 / (_checked_bpm(initial_bpm) * CLOCKS_PER_BEAT)
        self.alpha, self.beta, self.min_tick_seconds = alpha, beta, min_tick_seconds
        self.running = False
        self.tick = -1  # index of the last tick received; the next one is tick + 1
        self.tick_seconds: float | None = None  # filtered time of tick ``self.tick``
        self._last_raw: float | None = None
        self.stats = ClockStats()

    @property
    def bpm(self) -> float:
        return 60.0 / (self.period * CLOCKS_PER_BEAT)

    # --- transport -------------------------------------------------------------------------
    def start(self, t_seconds: float) -> None:
        """MIDI Start: the next tick is the downbeat of step 0."""
        self.running = True
        self.tick = -1
        self.tick_seconds = t_seconds - self.period
        self._last_raw = None

    def resume(self, t_seconds: float) -> None:
        """MIDI Continue: carry on from the current song position."""
        self.running = True
        self.tick_seconds = t_seconds - self.period
        self._last_raw = None

    def stop(self, t_seconds: float) -> None:
        self.running = False

    def song_position(self, sixteenths: int) -> None:
        """Song Position Pointer, in 16th notes (= grid steps) from the song start."""
        self.tick = int(sixteenths) * CLOCKS_PER_STEP - 1

    # --- ticks -----------------------------------------------------------------------------
    def clock_tick(self, t_seconds: float) -> bool:
        """Feed one clock tick; returns False if it was ignored as implausible."""
        if self._last_raw is not None and t_seconds - self._last_raw < self.min_tick_seconds:
            self.stats.ignored_ticks += 1
            return False
        self.stats.ticks += 1
        if self.running:
            self.tick += 1
        if self._last_raw is None or self.tick_seconds is None:
            self.tick_seconds = t_seconds
        else:
            gap_ticks = max(1, round((t_seconds - self._last_raw) / self.period)) if not self.running else 1
            predicted = self.tick_seconds + gap_ticks * self.period
            error = t_seconds - predicted
            if abs(error) > 3 * self.period:
                # A jump (tempo change by more than the filter can follow, or a gap in the
                # stream): start the estimate over from this tick.
                self.stats.resyncs += 1
                raw_period = (t_seconds - self._last_raw) / gap_ticks
                if 60.0 / (MAX_BPM * CLOCKS_PER_BEAT) <= raw_period <= 60.0 / (MIN_BPM * CLOCKS_PER_BEAT):
                    self.period = raw_period
                self.tick_seconds = t_seconds
            else:
                self.tick_seconds = predicted + self.alpha * error
                period = self.period + self.beta * error
                self.period = min(max(period, 60.0 / (MAX_BPM * CLOCKS_PER_BEAT)), 60.0 / (MIN_BPM * CLOCKS_PER_BEAT))
        self._last_raw = t_seconds
        return True

    # --- grid ------------------------------------------------------------------------------
    def step_time(self, step: float) -> float:
        anchor = self.tick_seconds if self.tick_seconds is not None else 0.0
        return anchor + (step * CLOCKS_PER_STEP - self.tick) * self.period

    def step_at(self, t_seconds: float) -> float:
        anchor = self.tick_seconds if self.tick_seconds is not None else t_seconds
        return (self.tick + (t_seconds - anchor) / self.period) / CLOCKS_PER_STEP


class LinkClock(Clock):
    """The grid of an Ableton Link session: step ``4 b`` falls where the session's beat ``b``
    does, so with a quantum of one bar, step 0 and every bar line fall on the session's bar
    lines. :meth:`follow` is told what the session says (its tempo and the beat at a moment);
    the transport follows Link's start/stop, as MIDI Start/Stop."""

    def __init__(self, bpm: float, origin_seconds: float = 0.0):
        self._bpm = _checked_bpm(bpm)
        self.origin_seconds = origin_seconds  # where the session's beat 0 falls
        self.running = False
        self.peers = 0

    @property
    def bpm(self) -> float:
        return self._bpm

    def follow(self, bpm: float, beat: float, t_seconds: float) -> None:
        """The session is at ``beat`` at ``t_seconds``, at ``bpm``."""
        self._bpm = min(max(float(bpm), MIN_BPM), MAX_BPM)
        self.origin_seconds = t_seconds - beat * 60.0 / self._bpm

    def start(self, t_seconds: float) -> None:
        self.running = True

    def resume(self, t_seconds: float) -> None:
        self.running = True

    def stop(self, t_seconds: float) -> None:
        self.running = False

    def step_time(self, step: float) -> float:
        return self.origin_seconds + step * self.step_seconds

    def step_at(self, t_seconds: float) -> float:
        return (t_seconds - self.origin_seconds) / self.step_seconds


def _checked_bpm(bpm: float) -> float:
    if not (math.isfinite(bpm) and MIN_BPM <= bpm <= MAX_BPM):
        raise ValueError(f"tempo must be between {MIN_BPM:g} and {MAX_BPM:g} bpm, got {bpm}")
    return float(bpm)
