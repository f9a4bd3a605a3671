"""bachd's live core and its worker's turn, shared by ``bachd run`` (:mod:`bachd.live.daemon`,
on real time and real ports) and the simulated session (:mod:`bachd.live.session`, on a manual
clock): the clock, the performer over a fresh stream, the router that feeds it, and what one
turn of the worker does with the input read since the last.

Pure logic driven by timestamps: nothing here reads the time (``now`` is handed in), sleeps
or touches a port.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from enum import Enum

from bachd.live.clock import make_clock
from bachd.live.performer import Performer
from bachd.live.router import Router
from bachd.live.scheduler import Output
from bachd.live.stream import Stream
from bachd.model.sampling import Sampler
from bachd.model.streaming import StreamingEngine
from bachd.presets import LiveSettings

Input = Sequence[tuple[float, Sequence[int]]]  # (seconds it arrived, MIDI bytes)


class Turn(Enum):
    PLAYED = "played"  # input was handled or something was due: the performer played
    BUSY = "busy"  # spare-time work was done and more remains
    IDLE = "idle"  # nothing to do until more input or the next wake-up


class LiveLoop:
    """The clock ``settings`` names, the performer and its router, on ``engine`` and ``output``."""

    def __init__(self, engine: StreamingEngine, settings: LiveSettings, output: Output, now_seconds: float):
        self.output = output
        self.clock = make_clock(settings, now_seconds)
        sampler = Sampler(settings.sampling(), settings.rng_seed)
        sampler.log_probs = False  # the live path never looks at them
        self.performer = Performer(Stream(engine, sampler), self.clock, output, settings)
        self.router = Router(self.performer)
        self._dropped_seen = 0
        self._input_lost = False  # input was dropped and no clean slate has been made since

    def turn(
        self, now: Callable[[], float], batch: Input = (), quiet_before: Collection[int] = (), dropped: int = 0,
        spare: bool = True,
    ) -> Turn:
        """One turn of the worker: the clock's driver polled, ``batch`` routed (``quiet_before``:
        the indices of messages that came after a quiet spell; ``dropped``: input messages
        lost so far), then whatever is due played, or else one bite of spare-time work (unless
        ``spare`` is False)."""
        performer = self.performer
        transport = self.clock.poll(now())
        if transport is not None:
            kind, at = transport
            performer.transport_start(at) if kind == "start" else performer.transport_stop(at)
        if dropped > self._dropped_seen:
            self._dropped_seen, self._input_lost = dropped, True
        for index, (t_seconds, data) in enumerate(batch):
            if index in quiet_before and (self._input_lost or performer.player.storm):
                # The flood or storm was over before this message came: a clean slate before
                # the player's next notes, however late its backlog is read.
                self._input_lost = False
                performer.input_lost()
            self.router.handle(t_seconds, data)
        if self._input_lost and not batch:
            # Input was lost, note-offs perhaps among it, and all that was queued is read.
            self._input_lost = False
            performer.input_lost()
        wake = performer.next_wakeup(now())
        if batch or (wake is not None and wake <= now()):
            performer.update(now())
            return Turn.PLAYED
        if spare and performer.background(now()):  # chords ahead, a batched step at a time
            return Turn.BUSY
        return Turn.IDLE
