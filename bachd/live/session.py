"""bachd's live performer on a simulated clock: the same router, performer, stream and
output as ``bachd run`` builds (:func:`build_live`), fed timestamped MIDI and stepped in
1 ms ticks. The offline file commands (``bachd harmonize``, ``bachd continue``) and the
tests play through it, so what they measure is what a musician hears live.
"""

from __future__ import annotations

from typing import Callable, Optional

from bachd.deadline import check_deadline
from bachd.live.clock import Clock, InternalClock, LinkClock, MidiClock
from bachd.live.performer import Performer
from bachd.presets import LiveSettings
from bachd.live.router import Router
from bachd.model.sampling import Sampler
from bachd.live.scheduler import OutputStage, Voicer
from bachd.live.stream import Stream


def make_clock(settings: LiveSettings, now_seconds: float) -> Clock:
    if settings.clock == "midi":
        return MidiClock(initial_bpm=settings.bpm)
    if settings.clock == "link":
        return LinkClock(settings.bpm)  # stopped until the session plays
    return InternalClock(settings.bpm, origin_seconds=now_seconds)


def build_live(engine, settings: LiveSettings, output: OutputStage, clock: Clock) -> tuple[Performer, Router]:
    """The performer (over a fresh stream on ``engine``) and the router that feeds it."""
    sampler = Sampler(settings.sampling(), settings.rng_seed)
    sampler.log_probs = False  # the live path never looks at them
    performer = Performer(Stream(engine, sampler), clock, output, settings)
    return performer, Router(performer, clock, settings)


class Session:
    """``bachd run`` without ports or threads. ``ahead``: spend the spare time between ticks
    computing chords ahead, as the daemon's worker does when it is idle."""

    tick_seconds = 0.001

    def __init__(self, engine, settings: LiveSettings, ahead: bool = True):
        self.settings, self.ahead = settings, ahead
        self.now = 0.0
        self.sent: list[tuple[float, tuple]] = []
        self.output = OutputStage(lambda m: self.sent.append((self.now, tuple(m))), Voicer(settings.out_channels()),
                                  now=lambda: self.now)
        self.clock = make_clock(settings, 0.0)
        self.performer, self.router = build_live(engine, settings, self.output, self.clock)

    def send(self, *message: int) -> list[tuple]:
        """One incoming message now; the messages bachd sent in answer at once."""
        start = len(self.sent)
        self.router.handle(self.now, list(message))
        self.performer.update(self.now)  # as the daemon's worker does after each input batch
        return [m for _, m in self.sent[start:]]

    def run_until(self, t_seconds: float, each_tick: Optional[Callable[[float], None]] = None) -> None:
        performer = self.performer
        ticks = 0
        while self.now < t_seconds:
            self.now = min(t_seconds, self.now + self.tick_seconds)
            ticks += 1
            if ticks % 100 == 0:
                check_deadline()  # a studio job stops at its limit (a no-op on the command line)
            if each_tick is not None:
                each_tick(self.now)
            wake = performer.next_wakeup(self.now)
            if wake is not None and wake <= self.now:
                performer.update(self.now)
            elif self.ahead:
                while performer.background(self.now):
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
