"""Ableton Link (``bachd run --clock link``): bachd joins (or starts) a Link session on the
local network and takes its tempo, beat phase and start/stop from it.

Through ``linkpython-extern``, a maintained binding of Ableton's own Link library with wheels
for Linux, macOS and Windows (no compiler needed). This is the only module that imports it.
Link's clock is the host's raw monotonic clock, which drifts from Python's ``time.monotonic``
by some parts per million, so each reading is paired with the monotonic time it was taken at.
"""

from __future__ import annotations

import time
from typing import Optional

from bachd.errors import BachdError
from bachd.live.clock import LinkClock

POLL_SECONDS = 0.005  # how often the worker reads the session: a tempo change is followed within a step
DISCOVERY_SECONDS = 1.0  # at launch, how long bachd waits to find peers before it starts the session itself
SETTLE_SECONDS = 1.0  # ... and, with peers, for their tempo to reach it (it can take longer: then it follows)


def _import_link():
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

    def join(self, clock: LinkClock, wait_seconds: float = DISCOVERY_SECONDS) -> None:
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
        bpm, beat, playing, now = self.read()
        clock.follow(bpm, beat, now)

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
