"""What a live mode (:mod:`bachd.live.continuation`, :mod:`bachd.live.harmonizer`) sees of
the :class:`~bachd.live.performer.Performer` that runs it: the clock, what the player
holds, the settings and the shared stream of model state. The performer picks the mode;
the mode only knows this stage, so neither module imports the other."""

from __future__ import annotations

from typing import Protocol

from bachd.live.clock import Clock
from bachd.live.player import PlayerInput
from bachd.live.stream import Stream
from bachd.presets import LiveSettings


class Stage(Protocol):
    clock: Clock
    player: PlayerInput
    settings: LiveSettings
    stream: Stream
    lookahead_seconds: float  # a step is computed this long before it is due
