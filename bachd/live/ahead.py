"""Chords computed ahead, in the live harmonizer's spare time.

In harmonize mode a melody note would cost three engine steps (alto, tenor, bass) on the
critical path. Between notes there is time to spare, so the chord the model would sample
under each likely next melody note is computed ahead, batched over candidates. A chord is the
model's own sample given the melody note, as the critical path would have drawn it; it is
keyed by the context's version and beat, so a stale one is never used. On a strong beat there
is more: ``chord_draws`` chords are drawn under each melody note and the one that closes best
from the chord on the beat before is kept (:class:`~bachd.live.ranking.Closing`), so a
melody that ends its phrase there finds a cadence under it about as often as Bach wrote one.
On the beat before, a melody note on the key's 2nd, 4th, 5th or 7th gets as many, and the
chord that prepares a close is kept (:class:`~bachd.live.ranking.Preparing`); a root-position
dominant kept there stands until the strong beat while the melody holds
(:meth:`~bachd.live.ranking.Preparing.standing`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Optional, Protocol

import numpy as np

from bachd.live.ranking import Closing, Preparing
from bachd.model.sampling import Sampler
from bachd.model.streaming import StreamingEngine
from bachd.music import encoding
from bachd.music.keys import KeyTracker

V = encoding.NUM_VOICES
Chord = tuple[np.ndarray, list]  # the step's tokens, and the engine state after them


class Stream(Protocol):
    """What the chords ahead read of the stream they compute for (:class:`bachd.live.stream.Stream`)."""

    engine: StreamingEngine
    grid_step: Optional[int]
    version: int
    bar_steps: int
    last: np.ndarray
    beats: tuple[np.ndarray, ...]
    keys: KeyTracker

    def prepare(self, beat: Optional[int] = None) -> None: ...

    def context_after_soprano(self) -> list: ...

    def strong_beat(self, beat: int) -> bool: ...

    def upbeat(self, beat: int) -> bool: ...

    def draw(
        self, sampler: Sampler, logits: np.ndarray, voice: int, beat: int, previous: np.ndarray,
        rule: Optional[np.ndarray], before: np.ndarray, tokens: np.ndarray,
    ) -> np.ndarray: ...


def rows_per_step(row_cost: float, most: int = 8) -> int:
    """The largest power of two up to ``most`` whose batched step costs no more than ``most``
    rows of the reference engine (:attr:`~bachd.model.streaming.StreamingEngine.row_cost`)."""
    group = most
    while group > 1 and group * row_cost > most:
        group //= 2
    return group


class ChordsAhead:
    """The chords computed ahead for a :class:`~bachd.live.stream.Stream`: engines on the
    same weights, batched over candidate melody notes, and their own random draws (the same
    seed, another stream of it), so that what the foreground plays does not depend on how much
    spare time there was."""

    # Candidates drawn together (a batched step of 8 costs about what one of 4 does).
    group = 8

    def __init__(self, stream: Stream, sampler: Sampler):
        self.stream, self.sampler = stream, sampler
        self._chords: dict[tuple[int, int], dict[int, Chord]] = {}
        # A melody note that comes in during a batched engine step waits for it, so a step is
        # kept to what eight rows of the reference engine cost (docs/figures.md); a wider
        # model steps its candidates in smaller bites. The draws are the same.
        self.set_step_rows(rows_per_step(stream.engine.row_cost, self.group))

    def set_step_rows(self, rows: int) -> None:
        """Step ``rows`` candidates at a time (a divisor of ``group``); they are drawn
        ``group`` at a time whatever the bites."""
        self.step_rows = rows
        self.engines = [self.stream.engine.spawn(rows) for _ in range(self.group // rows)]

    def set_key(self, row: int) -> None:
        for engine in self.engines:
            engine.set_key(row)

    def compute(self, soprano_tokens: list[int], restrict: Optional[np.ndarray]) -> Optional[Iterator[None]]:
        """A generator that computes the chord sampled under each of ``soprano_tokens`` at the
        stream's next step, one batched engine step or one batched draw per ``next()`` (None
        when there is nothing to do). The caller interleaves it with its real work."""
        stream = self.stream
        if stream.grid_step is None:
            return None
        beat = (stream.grid_step + 1) % stream.bar_steps
        table = self._chords.get((stream.version, beat))
        todo = [t for t in soprano_tokens if table is None or t not in table]
        return self._compute(todo, restrict, beat) if todo else None

    def _ranking(self, todo: list[int], beat: int) -> tuple[Optional[Closing | Preparing], list[int]]:
        """How the draws for ``beat`` are ranked, and which candidates get the further draws."""
        stream = self.stream
        if self.sampler.config.chord_draws <= 1:
            return None, []
        if stream.strong_beat(beat):
            return Closing(stream.beats, stream.keys.key), todo
        if stream.upbeat(beat):
            preparing = Preparing(stream.keys.key)
            return preparing, [token for token in todo if preparing.prepares(token)]
        return None, []

    def _compute(self, todo: list[int], restrict: Optional[np.ndarray], beat: int) -> Iterator[None]:
        stream = self.stream
        stream.prepare(beat)
        key, start, last = (stream.version, beat), stream.context_after_soprano(), stream.last.copy()
        table = self._chords.setdefault(key, {})
        while len(self._chords) > 4:  # the current context and a few it may be rolled back to
            del self._chords[next(iter(self._chords))]
        ranking, extra = self._ranking(todo, beat)
        best: dict[int, tuple] = {}  # soprano token -> rank of the chord kept for it
        # One chord under every candidate first (nearest melody notes first), so that each
        # has one soon; then the further draws.
        todo = todo + [token for token in extra for _ in range(self.sampler.config.chord_draws - 1)]
        group, rows = self.group, self.step_rows
        for first in range(0, len(todo), group):
            chunk = todo[first : first + group]
            tokens = np.empty((group, V), np.int64)
            tokens[:, 0] = chunk + chunk[-1:] * (group - len(chunk))
            for engine in self.engines:
                engine.set_state(start)
            before = np.broadcast_to(last, (group, V))
            for voice in range(1, V):
                parts = []
                for part, engine in enumerate(self.engines):  # a bite each
                    parts.append(engine.step(tokens[part * rows : (part + 1) * rows, voice - 1], voice, beat))
                    yield
                logits = parts[0] if len(parts) == 1 else np.concatenate(parts)
                previous = np.full(group, last[voice], np.int64)
                tokens[:, voice] = stream.draw(self.sampler, logits, voice, beat, previous, restrict, before, tokens)
                yield  # the draw, a bite of its own
            states = [engine.get_state() for engine in self.engines]
            for row, soprano in enumerate(chunk):
                score = ranking.rank(tokens[row]) if ranking is not None else (0, False)
                if soprano not in best or score > best[soprano]:  # ties: the earlier draw
                    best[soprano] = score
                    part, index = divmod(row, rows)
                    table[soprano] = (tokens[row].copy(), [a[index : index + 1].copy() for a in states[part]])

    def chord_for(self, grid_step: int, soprano_token: int) -> Optional[Chord]:
        """The chord computed ahead for ``soprano_token`` at ``grid_step``, if there is one
        for the stream's current context."""
        stream = self.stream
        if stream.grid_step is None or grid_step != stream.grid_step + 1:
            return None
        table = self._chords.get((stream.version, grid_step % stream.bar_steps))
        return None if table is None else table.get(soprano_token)

    def discard(self) -> None:
        self._chords.clear()
