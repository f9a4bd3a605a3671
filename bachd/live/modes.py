"""The contract of a live mode: what it is given (:class:`ModeHost`) and what it must answer
(:class:`LiveMode`). The performer (:mod:`bachd.live.performer`) runs whichever mode the
settings name, found in :data:`bachd.registry.MODES`; a mode knows only its host, so neither
imports the other. :mod:`bachd.live.continuation` and :mod:`bachd.live.harmonizer` are the two
bachd ships.
"""

from __future__ import annotations

from collections import Counter
from typing import ClassVar, Optional, Protocol

from bachd.live.clock import Clock
from bachd.live.player import PlayedNote, PlayerInput
from bachd.live.scheduler import Output
from bachd.live.stream import Stream
from bachd.presets import LiveSettings
from bachd.registry import MODES


class ModeHost(Protocol):
    """What a mode sees of the performer that runs it."""

    clock: Clock
    player: PlayerInput  # what the person playing holds and has played
    settings: LiveSettings
    stream: Stream  # the model's running context, shared by every mode
    out: Output  # bachd's voices: scheduled, sent, released
    lookahead_seconds: float  # a step is computed this long before it is due


class LiveMode(Protocol):
    """A live mode. The performer calls the event methods as the player plays, :meth:`update`
    when :meth:`next_wakeup` says, and :meth:`background` in spare time. Every method is pure
    logic on timestamps: no clock reading, no sleeping, no threads.

    ``counts``: the mode's own figures (``figures`` names them), kept by the performer across
    the mode's restarts (Start, a flood) and reported with the run's figures."""

    name: ClassVar[str]
    figures: ClassVar[tuple[str, ...]]
    # For the file commands (bachd harmonize, bachd continue) and the studio, which play a
    # file into the mode: what the player's part is called, what bachd did to it, and whether
    # the file's top line alone is played (a melody) or all its parts (a call).
    player_part: ClassVar[str]
    done: ClassVar[str]
    melody_only: ClassVar[bool]

    @classmethod
    def beats_after(cls, settings: LiveSettings) -> float:
        """How long, in beats, bachd may go on playing once the player has stopped."""
        ...

    @classmethod
    def summary(cls, notes_in: int, figures: dict[str, int], notes_out: int) -> str:
        """What a file command says it did: "12 melody notes, 12 with a chord struck under them"."""
        ...

    def __init__(self, host: ModeHost, counts: Counter[str]) -> None: ...

    @property
    def activity(self) -> str:
        """What the status line says it is doing: listening, answering, harmonizing..."""
        ...

    def note_on(self, t_seconds: float, step: int, velocity: int) -> None: ...

    def note_off(self, t_seconds: float, note: PlayedNote) -> None: ...

    def end_of_call(self) -> None:
        """The end-of-call CC."""

    def panic(self) -> None:
        """Everything bachd sounded was just silenced; what the mode was playing ends."""

    def reset(self) -> None:
        """Forget what was heard and what was playing (Stop, a jump); the context stays."""

    def update(self, now_seconds: float) -> None:
        """Do whatever is due at ``now_seconds``."""

    def background(self, now_seconds: float) -> bool:
        """A bite of spare-time work (computing ahead); True while more remains."""
        ...

    def next_wakeup(self, now_seconds: float) -> Optional[float]:
        """The next time :meth:`update` has work (None: only input can create work)."""
        ...

    def horizon(self) -> int:
        """Played notes that end before this grid step are no longer needed."""
        ...


def mode_class(name: str) -> type[LiveMode]:
    return MODES[name]  # type: ignore[no-any-return]


def mode_figures() -> tuple[str, ...]:
    """Every registered mode's figure names, in order (reported as 0 by a run that did not use
    that mode, so that the figures have the same keys whatever was played)."""
    names: list[str] = []
    for mode in MODES:
        names.extend(figure for figure in mode_class(mode).figures if figure not in names)
    return tuple(names)


def mode_for_cc(value: int) -> str:
    """The mode CC: its 0-127 range split evenly among the registered modes, in order."""
    names = list(MODES)
    return names[min(len(names) - 1, max(0, int(value)) * len(names) // 128)]
