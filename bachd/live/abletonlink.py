"""Ableton Link (``bachd run --clock link``): bachd joins (or starts) a Link session on the
local network and takes its tempo, beat phase and start/stop from it. :class:`LinkClock` is
the clock (:class:`bachd.live.clock.Clock`); :class:`LinkSession` is bachd's peer in the
session, which the clock polls.

Through ``linkpython-extern``, a maintained binding of Ableton's own Link library with wheels
for Linux, macOS and Windows (no compiler needed). This is the only module that imports it.
Link's clock is the host's raw monotonic clock, which drifts from Python's ``time.monotonic``
by some parts per million, so each reading is paired with the monotonic time it was taken at.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Optional, Protocol

from bachd.errors import BachdError
from bachd.live.clock import MAX_BPM, MIN_BPM, Clock, Transport

if TYPE_CHECKING:
    from bachd.presets import LiveSettings

POLL_SECONDS = 0.005  # how often the worker reads the session: a tempo change is followed within a step
DISCOVERY_SECONDS = 1.0  # at launch, how long bachd waits to find peers before it starts the session itself
SETTLE_SECONDS = 1.0  # ... and, with peers, for their tempo to reach it (it can take longer: then it follows)


def _import_link() -> Any:
    try:
        import link  # linkpython-extern
    except ImportError:
        raise BachdError("--clock link needs Ableton Link's Python binding: pip install linkpython-extern") from None
    return link


class LinkSession:
    """bachd's Link peer. ``quantum``: beats per bar, so that bar lines are shared."""

    def __init__(self, bpm: float, quantum: int):
        link = _import_link()
        self.quantum = quantum
        self.proposed_bpm = float(bpm)
        self.settled = False  # whether the session's tempo has reached bachd (or bachd set it)
        self.link = link.Link(float(bpm))  # the tempo bachd proposes if it starts the session
        self.link.startStopSyncEnabled = True
        self.link.enabled = True
        self._next_poll = 0.0

    @property
    def peers(self) -> int:
        return int(self.link.numPeers())

    def join(self, wait_seconds: float = DISCOVERY_SECONDS) -> tuple[float, float, bool, float]:
        """Look for peers for up to ``wait_seconds``. Alone, bachd starts the session playing
        (its own clock, as the internal clock would); with peers, it follows their transport:
        it plays when they play (start/stop sync on in the peer that starts them)."""
        deadline = time.monotonic() + wait_seconds
        while self.peers == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.peers:
            # A peer is found before its session's timeline is taken over: give that a moment,
            # so the ready line says the session's tempo, not the one bachd proposed.
            settle = time.monotonic() + SETTLE_SECONDS
            while self.link.captureAppSessionState().tempo() == self.proposed_bpm and time.monotonic() < settle:
                time.sleep(0.02)
            self.settled = self.link.captureAppSessionState().tempo() != self.proposed_bpm
        else:
            self.settled = True
            state = self.link.captureAppSessionState()
            state.setIsPlayingAndRequestBeatAtTime(True, self.link.clock().micros(), 0.0, float(self.quantum))
            self.link.commitAppSessionState(state)
        return self.read()

    def read(self) -> tuple[float, float, bool, float]:
        """The session now: (tempo, beat, playing, the monotonic time of that beat)."""
        state = self.link.captureAppSessionState()
        before = time.monotonic()
        micros = self.link.clock().micros()
        after = time.monotonic()
        return state.tempo(), state.beatAtTime(micros, float(self.quantum)), state.isPlaying(), (before + after) / 2

    def poll(self, now_seconds: float) -> Optional[tuple[float, float, bool, float]]:
        """:meth:`read`, at most every POLL_SECONDS (None in between)."""
        if now_seconds < self._next_poll:
            return None
        self._next_poll = now_seconds + POLL_SECONDS
        return self.read()

    def close(self) -> None:
        self.link.enabled = False


class Peer(Protocol):
    """What :class:`LinkClock` asks of its peer in the session (:class:`LinkSession`, or a
    test's stand-in)."""

    settled: bool

    @property
    def peers(self) -> int: ...

    def join(self) -> tuple[float, float, bool, float]: ...

    def poll(self, now_seconds: float) -> Optional[tuple[float, float, bool, float]]: ...

    def close(self) -> None: ...


class LinkClock(Clock):
    """The grid of an Ableton Link session: step ``4 b`` falls where the session's beat ``b``
    does, so with a quantum of one bar, step 0 and every bar line fall on the session's bar
    lines. :meth:`follow` is told what the session says (its tempo and the beat at a moment);
    the transport follows Link's start/stop, as MIDI Start/Stop. Stopped until the session
    plays."""

    name = "link"

    @classmethod
    def from_settings(cls, settings: LiveSettings, now_seconds: float) -> LinkClock:
        return cls(settings.bpm, quantum=settings.beats_per_bar)

    @classmethod
    def check(cls) -> None:
        _import_link()

    def __init__(self, bpm: float, origin_seconds: float = 0.0, quantum: int = 4, peer: Optional[Peer] = None):
        self._bpm = min(max(float(bpm), MIN_BPM), MAX_BPM)
        self.origin_seconds = origin_seconds  # where the session's beat 0 falls
        self.quantum = quantum
        self.running = False
        self.peers = 0
        self.peer = peer  # None until bachd begins playing (a test may give its own)

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

    def begin(self, now_seconds: float) -> None:
        """Join the session (or start it): its tempo and beat from now on."""
        if self.peer is None:
            self.peer = LinkSession(self._bpm, self.quantum)
        bpm, beat, _, at = self.peer.join()
        self.follow(bpm, beat, at)
        self.peers = self.peer.peers

    def poll(self, now_seconds: float) -> Optional[Transport]:
        """The session's tempo and beat; its start and stop, as MIDI Start and Stop are."""
        reading = None if self.peer is None else self.peer.poll(now_seconds)
        if reading is None:
            return None
        bpm, beat, playing, at = reading
        self.follow(bpm, beat, at)
        self.peers = self.peer.peers if self.peer is not None else 0
        if playing and not self.running:
            return ("start", at)
        if not playing and self.running:
            return ("stop", at)
        return None

    def close(self) -> None:
        if self.peer is not None:
            self.peer.close()

    def describe(self) -> str:
        peers = self.peers
        if not peers:
            return f"starting an Ableton Link session at {self.bpm:g} bpm"
        settled = self.peer is None or self.peer.settled
        tempo = f"{self.bpm:g} bpm" if settled else "taking the session's tempo"
        return f"in an Ableton Link session with {peers} peer{'s' * (peers != 1)}, {tempo}"

    def detail(self) -> str:
        return f"Link: {self.peers} peer{'s' * (self.peers != 1)}"
