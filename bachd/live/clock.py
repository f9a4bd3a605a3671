"""Where the 16th-note grid lies in time: the :class:`Clock` contract, and the two clocks that
need nothing but MIDI (the internal clock, and a follower of the DAW's MIDI clock). Every
clock is found by name in :data:`bachd.registry.CLOCKS` (Ableton Link's is in
:mod:`bachd.live.abletonlink`).

Pure logic on timestamps (seconds of ``time.monotonic()``): nothing here reads the time or
sleeps, so tests drive the clocks with made-up timestamps.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, ClassVar, Literal, Optional

from bachd.errors import BachdError
from bachd.music.encoding import STEPS_PER_BEAT
from bachd.registry import CLOCKS
from bachd.settings import SETTINGS

if TYPE_CHECKING:
    from bachd.presets import LiveSettings

CLOCKS_PER_BEAT = 24  # MIDI clock: 24 pulses per quarter note
CLOCKS_PER_STEP = CLOCKS_PER_BEAT // STEPS_PER_BEAT
MIN_BPM, MAX_BPM = float(SETTINGS["bpm"].low or 0), float(SETTINGS["bpm"].high or 0)

# A change of transport a clock's driver reports when polled: ("start" | "stop", at seconds).
Transport = tuple[Literal["start", "stop"], float]


def seconds_per_step(bpm: float) -> float:
    return 60.0 / (bpm * STEPS_PER_BEAT)


def make_clock(settings: LiveSettings, now_seconds: float) -> Clock:
    """The clock ``settings.clock`` names (:data:`bachd.registry.CLOCKS`)."""
    return CLOCKS[settings.clock].from_settings(settings, now_seconds)


class Clock:
    """What the performer, the router and the daemon ask of a clock. A clock says what it can
    do through its class attributes; nothing outside the clocks asks which clock it is.

    - ``sets_tempo``: the tempo can be set (the bpm setting, a CC, the panel);
    - ``follows_midi``: it follows the MIDI clock and transport that come in
      (:meth:`midi_tick`, :meth:`song_position`, and Start, Continue, Stop);
    - a clock with a driver of its own (a network session) reports changes of transport from
      :meth:`poll`, which the worker calls on every turn.
    """

    name: ClassVar[str] = "?"
    sets_tempo: bool = False  # a clock may change its mind (the auto clock, once MIDI clock comes)
    follows_midi: ClassVar[bool] = False
    running: bool

    @classmethod
    def from_settings(cls, settings: LiveSettings, now_seconds: float) -> Clock:
        raise NotImplementedError

    @classmethod
    def check(cls) -> None:
        """Raise :class:`~bachd.errors.BachdError` if this clock cannot run here (a library
        it needs is missing): called before any port opens."""

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

    # --- the transport (MIDI Start, Continue, Stop; a session's start/stop) ------------------
    def start(self, t_seconds: float) -> None:
        pass

    def resume(self, t_seconds: float) -> None:
        pass

    def stop(self, t_seconds: float) -> None:
        pass

    # --- what only some clocks do ------------------------------------------------------------
    def set_bpm(self, bpm: float, now_seconds: Optional[float] = None, source: str = "CC") -> None:
        """Change the tempo, keeping the grid position at ``now_seconds``."""
        raise BachdError(self.tempo_refusal(source))

    def tempo_refusal(self, source: str) -> str:
        """Why the tempo cannot be set on this clock (``source``: who asked)."""
        return f"{source}: the tempo follows the {self.name} clock; change it there"

    def midi_tick(self, t_seconds: float) -> None:
        """A MIDI clock tick came in (only a clock that ``follows_midi`` minds)."""

    def song_position(self, sixteenths: int, t_seconds: Optional[float] = None) -> None:
        """A Song Position Pointer came in at ``t_seconds``, in 16th notes (= grid steps) from
        the song start."""

    def begin(self, now_seconds: float) -> None:
        """bachd starts playing now (after the model is loaded): a clock with a driver
        connects to it here."""

    def poll(self, now_seconds: float) -> Optional[Transport]:
        """Called on every turn of the worker: a change of transport the driver reports."""
        return None

    def close(self) -> None:
        """Let go of the driver, if any."""

    # --- what the ready line, the status line and the panel say ------------------------------
    def describe(self) -> str:
        """The clock in the ready line: "90 bpm on the internal clock"."""
        return f"{self.bpm:g} bpm on the {self.name} clock"

    def detail(self) -> Optional[str]:
        """Anything more the status line and the panel show (Link's peers), else None."""
        return None


class InternalClock(Clock):
    """A steady grid at ``bpm`` whose step 0 falls at ``origin_seconds``."""

    name = "internal"
    sets_tempo = True

    @classmethod
    def from_settings(cls, settings: LiveSettings, now_seconds: float) -> InternalClock:
        return cls(settings.bpm, origin_seconds=now_seconds)

    def __init__(self, bpm: float, origin_seconds: float):
        self._bpm = _checked_bpm(bpm)
        self.origin_seconds = origin_seconds
        self.running = True

    @property
    def bpm(self) -> float:
        return self._bpm

    def set_bpm(self, bpm: float, now_seconds: Optional[float] = None, source: str = "CC") -> None:
        """Change tempo without moving the grid position at ``now_seconds`` (None: step 0)."""
        now_seconds = self.origin_seconds if now_seconds is None else now_seconds
        position = self.step_at(now_seconds)
        self._bpm = _checked_bpm(bpm)
        self.origin_seconds = now_seconds - position * self.step_seconds

    def step_time(self, step: float) -> float:
        return self.origin_seconds + step * self.step_seconds

    def step_at(self, t_seconds: float) -> float:
        return (t_seconds - self.origin_seconds) / self.step_seconds

    def begin(self, now_seconds: float) -> None:
        self.origin_seconds = now_seconds  # step 0 when bachd starts playing, not when it was built


class MidiClock(Clock):
    """Follows 24-per-quarter MIDI clock with start, stop, continue and song position.

    Tick times are tracked with an alpha-beta filter: the phase follows each tick by
    ``alpha`` of its error and the period by ``beta``, so a DAW's timing jitter (a
    millisecond or two on most systems) does not shake the grid, while a tempo change is
    followed within a beat or two. Ticks closer together than ``min_tick_seconds`` (a clock
    storm, or a duplicated message) are ignored; a tick far off the prediction (a jump in
    tempo, a paused clock) resynchronises the filter instead of dragging it.
    """

    name = "midi"
    follows_midi = True

    @classmethod
    def from_settings(cls, settings: LiveSettings, now_seconds: float) -> MidiClock:
        return cls(initial_bpm=settings.bpm)

    def __init__(
        self, initial_bpm: float = 120.0, alpha: float = 0.25, beta: float = 0.02, min_tick_seconds: float = 0.002
    ):
        self.period = 60.0 / (_checked_bpm(initial_bpm) * CLOCKS_PER_BEAT)
        self.alpha, self.beta, self.min_tick_seconds = alpha, beta, min_tick_seconds
        self.running = False
        self.tick = -1  # index of the last tick received; the next one is tick + 1
        self.tick_seconds: float | None = None  # filtered time of tick ``self.tick``
        self._last_raw: float | None = None

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

    def describe(self) -> str:
        return "following MIDI clock"

    def song_position(self, sixteenths: int, t_seconds: Optional[float] = None) -> None:
        self.tick = int(sixteenths) * CLOCKS_PER_STEP - 1

    # --- ticks -----------------------------------------------------------------------------
    def midi_tick(self, t_seconds: float) -> None:
        """Feed one clock tick; one closer than ``min_tick_seconds`` to the last is ignored."""
        if self._last_raw is not None and t_seconds - self._last_raw < self.min_tick_seconds:
            return
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
                raw_period = (t_seconds - self._last_raw) / gap_ticks
                if 60.0 / (MAX_BPM * CLOCKS_PER_BEAT) <= raw_period <= 60.0 / (MIN_BPM * CLOCKS_PER_BEAT):
                    self.period = raw_period
                self.tick_seconds = t_seconds
            else:
                self.tick_seconds = predicted + self.alpha * error
                period = self.period + self.beta * error
                self.period = min(max(period, 60.0 / (MAX_BPM * CLOCKS_PER_BEAT)), 60.0 / (MIN_BPM * CLOCKS_PER_BEAT))
        self._last_raw = t_seconds

    # --- grid ------------------------------------------------------------------------------
    def step_time(self, step: float) -> float:
        anchor = self.tick_seconds if self.tick_seconds is not None else 0.0
        return anchor + (step * CLOCKS_PER_STEP - self.tick) * self.period

    def step_at(self, t_seconds: float) -> float:
        anchor = self.tick_seconds if self.tick_seconds is not None else t_seconds
        return (self.tick + (t_seconds - anchor) / self.period) / CLOCKS_PER_STEP


class AutoClock(Clock):
    """The internal clock until the DAW's MIDI clock, transport or song position comes, then
    a follower of it; back to the internal clock once the DAW has been stopped and silent for
    ``idle_seconds`` (its clock unplugged, or a DAW that sends none while stopped). So a
    keyboard alone is played with at once, and a DAW sends bachd its tempo, grid and
    transport as soon as it sends anything.

    The hand-overs are changes of transport the worker learns from :meth:`poll`: MIDI clock
    or a Song Position Pointer arriving under the running internal clock is a Stop (what
    bachd sounds is released; the DAW's Start or Continue starts it again), and the internal
    clock taking over is a Start."""

    name = "auto"
    follows_midi = True
    idle_seconds = 3.0

    @classmethod
    def from_settings(cls, settings: LiveSettings, now_seconds: float) -> AutoClock:
        return cls(settings.bpm, now_seconds)

    def __init__(self, bpm: float, origin_seconds: float):
        self.internal = InternalClock(bpm, origin_seconds)
        self.midi = MidiClock(initial_bpm=bpm)
        self.current: Clock = self.internal
        self._heard: Optional[float] = None  # when the DAW last sent clock or transport
        self._handover: Optional[Transport] = None  # reported by poll, done by stop() or start()
        self._sync()

    def _sync(self) -> None:
        self.running = self.current.running
        self.sets_tempo = self.current is self.internal

    @property
    def bpm(self) -> float:
        return self.current.bpm

    def step_time(self, step: float) -> float:
        return self.current.step_time(step)

    def step_at(self, t_seconds: float) -> float:
        return self.current.step_at(t_seconds)

    def _to_daw(self, t_seconds: float) -> None:
        self._heard, self._handover, self.current = t_seconds, None, self.midi

    def start(self, t_seconds: float) -> None:
        if self._handover is not None and self._handover[0] == "start":  # the internal clock again, from here
            self._handover, self.current = None, self.internal
            self.internal.origin_seconds = t_seconds
        else:  # the DAW's Start
            self._to_daw(t_seconds)
            self.midi.start(t_seconds)
        self._sync()

    def resume(self, t_seconds: float) -> None:
        self._to_daw(t_seconds)
        self.midi.resume(t_seconds)
        self._sync()

    def stop(self, t_seconds: float) -> None:
        if self.current is self.midi or self._handover is not None:  # the DAW's Stop, or its clock taking over
            self._to_daw(t_seconds)
        self.current.stop(t_seconds)
        self._sync()

    def midi_tick(self, t_seconds: float) -> None:
        self.midi.midi_tick(t_seconds)
        self._daw_heard(t_seconds)

    def song_position(self, sixteenths: int, t_seconds: Optional[float] = None) -> None:
        # A DAW that sends no clock while stopped still sends the song position when its
        # playhead moves: it is there, and its Continue will start from that place.
        self.midi.song_position(sixteenths)
        self._daw_heard(t_seconds if t_seconds is not None else self._heard or 0.0)

    def _daw_heard(self, t_seconds: float) -> None:
        self._heard = t_seconds
        if self.current is self.internal and self._handover is None:
            self._handover = ("stop", t_seconds)

    def set_bpm(self, bpm: float, now_seconds: Optional[float] = None, source: str = "CC") -> None:
        if self.current is not self.internal:
            raise BachdError(f"{source}: the tempo follows the DAW's MIDI clock; change it there")
        self.internal.set_bpm(bpm, now_seconds, source)

    def begin(self, now_seconds: float) -> None:
        self.internal.begin(now_seconds)

    def poll(self, now_seconds: float) -> Optional[Transport]:
        if self._handover is not None:
            return self._handover
        idle = self._heard is not None and now_seconds - self._heard >= self.idle_seconds
        if self.current is self.midi and not self.midi.running and idle:
            self._handover = ("start", now_seconds)
            return self._handover
        return None

    def describe(self) -> str:
        if self.current is self.midi:
            return "following MIDI clock"
        return f"{self.bpm:g} bpm on the internal clock until MIDI clock comes"

    def detail(self) -> Optional[str]:
        return "following MIDI clock" if self.current is self.midi else None


def _checked_bpm(bpm: float) -> float:
    if not (math.isfinite(bpm) and MIN_BPM <= bpm <= MAX_BPM):
        raise ValueError(f"tempo must be between {MIN_BPM:g} and {MAX_BPM:g} bpm, got {bpm}")
    return float(bpm)
