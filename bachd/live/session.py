"""bachd's live performer on a simulated clock: the same router, performer, stream and
output as ``bachd run`` builds (:class:`bachd.live.loop.LiveLoop`), fed timestamped MIDI and stepped in
1 ms ticks. The offline file commands (``bachd harmonize``, ``bachd continue``) and the
tests play through it, so what they measure is what a musician hears live.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Optional

from bachd.deadline import check_deadline
from bachd.live.loop import LiveLoop, Turn
from bachd.live.scheduler import Output, Voicer
from bachd.model.streaming import StreamingEngine
from bachd.presets import LiveSettings


class Session:
    """``bachd run`` without ports or threads. ``ahead``: spend the spare time between ticks
    computing chords ahead, as the daemon's worker does when it is idle."""

    tick_seconds = 0.001

    def __init__(self, engine: StreamingEngine, settings: LiveSettings, ahead: bool = True):
        self.settings, self.ahead = settings, ahead
        self.now = 0.0
        self.sent: list[tuple[float, tuple]] = []
        self.output = Output(lambda m: self.sent.append((self.now, tuple(m))), Voicer(settings.out_channels()),
                             now=self._now)
        self.loop = LiveLoop(engine, settings, self.output, 0.0)
        self.clock, self.performer, self.router = self.loop.clock, self.loop.performer, self.loop.router
        self.clock.begin(0.0)

    def _now(self) -> float:
        return self.now

    def send(self, *message: int) -> list[tuple]:
        """One incoming message now; the messages bachd sent in answer at once."""
        start = len(self.sent)
        self.loop.turn(self._now, [(self.now, message)], spare=False)  # as a worker's turn with one message
        return [m for _, m in self.sent[start:]]

    def run_until(self, t_seconds: float, each_tick: Optional[Callable[[float], None]] = None) -> None:
        """Tick to ``t_seconds``: each tick one turn of the worker with no input (and, with
        ``ahead``, all the spare-time work there is), then the sends that are due."""
        ticks = 0
        while self.now < t_seconds:
            self.now = min(t_seconds, self.now + self.tick_seconds)
            ticks += 1
            if ticks % 100 == 0:
                check_deadline()  # a studio job stops at its limit (a no-op on the command line)
            if each_tick is not None:
                each_tick(self.now)
            while self.loop.turn(self._now, spare=self.ahead) is Turn.BUSY:
                pass
            self.output.send_due(self.now)

    def play(self, events: list[tuple[float, tuple]], until_seconds: float) -> None:
        """Feed ``(t_seconds, message)`` events at their times, then run to ``until_seconds``."""
        for t_seconds, message in sorted(events, key=lambda e: e[0]):
            self.run_until(t_seconds)
            self.send(*message)
        self.run_until(until_seconds)

    def finish(self) -> None:
        """Everything still sounding released, as at the end of a live run."""
        self.performer.shutdown()
