"""The model's running context in the live path: whole steps (S, A, T, B) fed through the
streaming engine one token at a time, snapshots to roll back to, and chords computed ahead.
Both live modes (:mod:`bachd.live.continuation`, :mod:`bachd.live.harmonizer`) play over one Stream.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Optional

import numpy as np

from bachd.live.ahead import ChordsAhead
from bachd.model.sampling import MAX_SILENT_STEPS, NO_REST, Sampler, root_bias
from bachd.model.streaming import StreamingEngine
from bachd.music import encoding
from bachd.music.keys import KeyTracker, voice_biases

V = encoding.NUM_VOICES


@dataclass(frozen=True)
class Context:
    """A snapshot of a :class:`Stream` to roll back to: the engine state and what the stream
    knows of the steps fed so far."""

    base: list  # the engine's state before the previous token is consumed
    prev: int
    last: np.ndarray
    grid_step: Optional[int]
    silent_steps: int
    logits0: Optional[np.ndarray]
    beat0: int
    after0: Optional[list]
    version: int
    keys: tuple
    beats: tuple


class Stream:
    """The model's running context: feeds whole steps (S, A, T, B) through the engine,
    taking the tokens it is given and sampling the rest, with snapshots for rolling back.

    The soprano's logits for the next step are computed ahead (:meth:`prepare`), so
    harmonizing a melody note costs three engine steps (alto, tenor, bass), or none when its
    chord was computed ahead (:attr:`ahead`, :mod:`bachd.live.ahead`).

    Alto, tenor and bass stay at or under the soprano (``_under_table``): under a
    melody a harmony note above it sounds like a wrong note, whatever the model's odds.

    A sampled soprano may not let all four voices rest for more than
    :data:`~bachd.model.sampling.MAX_SILENT_STEPS` in a row, as in offline generation: an answer
    that falls silent comes back in.

    Sampled voices are held to the key of what the player has played so far
    (:class:`KeyTracker`, named again at the end of every beat) by the sampler's
    ``key_pull``, ``inner_pull`` and ``minor_pull``; a model with the key input is told that key ("not
    known" until one is named). The tracker hears the voices a step was given (``known``),
    not the ones bachd drew: counting its own harmony let bachd's guesses steer the key it
    was pulled toward (docs/figures.md). So a continue-mode answer, which is bachd's alone,
    keeps the key of the call.

    Grid step 0 is a downbeat (the transport's Start, or song position 0): the model is told
    each step's 16th within a 4/4 bar.
    """

    bar_steps = encoding.STEPS_PER_BAR
    remembered_beats = 4
    # The chords sounding on the last few beats, the latest first: what a close on the next
    # strong beat is heard to come from (bachd.live.ranking.Closing).
    beats: tuple[np.ndarray, ...]
    grid_step: Optional[int]  # the last step fed (None: none since the start or a jump)
    prev: int  # the last token fed
    _base: list  # the engine's state before the previous token is consumed
    _logits0: Optional[np.ndarray]  # the next step's soprano logits, computed ahead
    _after0: Optional[list]  # the engine's state after them

    def __init__(self, engine: StreamingEngine, sampler: Sampler):
        self.engine, self.sampler = engine, sampler
        self.ahead = ChordsAhead(self, sampler.spawn(1))
        self._versions = itertools.count()
        self.reset()

    def set_sampling(self, config) -> None:
        """New sampling settings for every draw from now on; chords drawn ahead under the
        old ones are dropped."""
        self.sampler.config = self.ahead.sampler.config = config
        self._set_bias()
        self.discard_chords()
        self.version = next(self._versions)  # a job computing chords ahead starts over

    def restart(self) -> None:
        """As at launch: an empty context and the random draws started over from the seed."""
        self.reset()
        self.sampler.reseed()
        self.ahead.sampler.reseed()

    def cut(self) -> None:
        """Everything bachd sounded was just released (Stop, panic, a jump): from here a
        voice may not hold a note, only strike one. The model's context stays."""
        self.last = np.full(V, encoding.REST, np.int64)
        self.discard_chords()
        self.version = next(self._versions)

    def relocate(self) -> None:
        """The grid jumped (song position): keep the context, forget where it stood."""
        if self._logits0 is not None:
            self.engine.set_state(self._base)
        self.grid_step = None
        self._logits0 = self._after0 = None
        self._beat0 = -1
        self.beats = ()
        self.discard_chords()
        self.version = next(self._versions)

    def reset(self) -> None:
        self.engine.reset()
        self.prev = encoding.BOS
        self.last = np.full(V, encoding.REST, np.int64)
        self.grid_step = None
        self.silent_steps = 0  # steps in a row, up to the last one, with all four voices resting
        self.beats = ()
        self._base = self.engine.get_state()  # state before the previous token is consumed
        self._logits0 = None
        self._beat0 = -1
        self._after0 = None
        self.version = next(self._versions)  # names the context; a restore brings its version back
        self.ahead.discard()
        self.keys = KeyTracker()
        self.bias: Optional[np.ndarray] = None  # (4, vocab): per voice, added to the logits of sampled voices
        self._set_bias()

    def snapshot(self) -> Context:
        return Context(self._base, self.prev, self.last.copy(), self.grid_step, self.silent_steps, self._logits0,
                       self._beat0, self._after0, self.version, self.keys.state(), self.beats)

    def restore(self, context: Context) -> None:
        self._base, self.prev, self.last = context.base, context.prev, context.last.copy()
        self.grid_step, self.silent_steps, self.version = context.grid_step, context.silent_steps, context.version
        self._logits0, self._beat0, self._after0 = context.logits0, context.beat0, context.after0
        self.keys.set_state(context.keys)
        self.beats = context.beats
        self._set_bias()
        self.engine.set_state(self._after0 if self._logits0 is not None and self._after0 is not None else self._base)

    def context_after_soprano(self) -> list:
        """The engine's state once the next step's soprano logits are computed (:meth:`prepare`)."""
        assert self._after0 is not None, "prepare() first"
        return self._after0

    def prepare(self, beat: Optional[int] = None) -> None:
        """Compute the next step's soprano logits now, off the critical path."""
        if beat is None:
            beat = ((self.grid_step if self.grid_step is not None else -1) + 1) % self.bar_steps
        if self._logits0 is not None and self._beat0 == beat:
            return
        if self._logits0 is not None:
            self.engine.set_state(self._base)
        self._logits0 = self.engine.step(np.array([self.prev]), 0, beat)[0]
        self._beat0 = beat
        self._after0 = self.engine.get_state()

    def feed(
        self, grid_step: int, known: dict[int, int], restrict: Optional[np.ndarray] = None,
        pad: str = "rest", max_pad: int = 16,
    ) -> np.ndarray:
        """Feed one step at ``grid_step``: known voices take their token, the rest are
        sampled (under ``restrict`` if given). Missing steps since the last one are padded
        (rests or held notes, at most ``max_pad``, keeping the beat position consistent).
        The key tracker hears the known voices only."""
        if self.grid_step is not None and grid_step > self.grid_step + 1:
            gap = grid_step - self.grid_step - 1
            count = gap if gap <= max_pad else gap % encoding.STEPS_PER_BEAT
            count = count if count <= max_pad else 0
            filler = {v: _continuation(int(self.last[v])) if pad == "hold" else encoding.REST for v in range(V)}
            for k in range(grid_step - count, grid_step):
                self._feed_one(k, filler, None, heard=())
        return self._feed_one(grid_step, known, restrict, heard=tuple(known))

    def _feed_one(self, grid_step: int, known: dict[int, int], restrict: Optional[np.ndarray],
                  heard: tuple[int, ...]) -> np.ndarray:
        beat = grid_step % self.bar_steps
        self.prepare(beat)
        tokens = np.empty(V, np.int64)
        logits = self._logits0
        assert logits is not None
        for voice in range(V):
            if voice:
                logits = self.engine.step(np.array([tokens[voice - 1]]), voice, beat)[0]
            if voice in known:
                tokens[voice] = known[voice]
            else:
                rule = restrict if restrict is None or restrict.ndim == 1 else restrict[voice]
                if voice == 0 and self.silent_steps >= MAX_SILENT_STEPS:
                    rule = NO_REST if rule is None else rule & NO_REST
                previous = self.last[voice : voice + 1]
                drawn = self.draw(self.sampler, logits[None], voice, beat, previous, rule, self.last, tokens[None])
                tokens[voice] = drawn[0]
        self._advance(grid_step, tokens, self.engine.get_state(), heard)
        return tokens

    def _advance(self, grid_step: int, tokens: np.ndarray, base: list, heard: tuple[int, ...]) -> None:
        self.keys.add(tokens[list(heard)])
        if grid_step % encoding.STEPS_PER_BEAT == encoding.STEPS_PER_BEAT - 1:
            before = self.keys.key
            if self.keys.detect() != before:
                self._set_bias()
        self.silent_steps = self.silent_steps + 1 if (tokens == encoding.REST).all() else 0
        self.prev = int(tokens[-1])
        self.last = tokens
        if grid_step % encoding.STEPS_PER_BEAT == 0:
            self.beats = (tokens,) + self.beats[: self.remembered_beats - 1]
        self.grid_step = grid_step
        self._base = base
        self._logits0 = self._after0 = None
        self.version = next(self._versions)

    def draw(
        self, sampler: Sampler, logits: np.ndarray, voice: int, beat: int, previous: np.ndarray,
        rule: Optional[np.ndarray], before: np.ndarray, tokens: np.ndarray,
    ) -> np.ndarray:
        """Voice ``voice`` of each row of ``tokens`` (the step so far, (rows, 4)), drawn from
        ``logits`` under the rules: ``rule`` if given, at or under the soprano (a lower voice),
        the key's pull and, for the bass on the beat, the pull to the root of the chord above."""
        if voice:
            under = _UNDER[voice][tokens[:, 0]] if len(tokens) > 1 else _UNDER[voice][tokens[0, 0]]
            rule = under if rule is None else rule & under
        if self.bias is not None:
            logits = logits + self.bias[voice]
        above = tokens[:, :voice]
        return sampler.sample(
            logits, voice, previous, rule, before=before, above=above, pitch_bias=self._root_bias(voice, beat, above)
        )[0]

    def _root_bias(self, voice: int, beat: int, upper: np.ndarray) -> Optional[np.ndarray]:
        """The bass's pull toward the root of the chord above it, on the beat
        (:func:`bachd.model.sampling.root_bias`); None for other voices and steps."""
        pull = self.sampler.config.root_pull
        if voice != V - 1 or pull <= 0 or beat % encoding.STEPS_PER_BEAT:
            return None
        return root_bias(upper, pull)

    def _set_bias(self) -> None:
        """The key pull and the model's key input, for the key named now."""
        config = self.sampler.config
        key = self.keys.key
        biases = voice_biases([key], config) if key is not None else None
        self.bias = None if biases is None else biases[0]
        row = encoding.key_row(key)
        self.engine.set_key(row)
        self.ahead.set_key(row)

    def strong_beat(self, beat: int) -> bool:
        """Whether 16th ``beat`` of this stream's bar is a strong beat (:func:`bachd.music.encoding.strong_beat`)."""
        return encoding.strong_beat(beat, self.bar_steps)

    def upbeat(self, beat: int) -> bool:
        """Whether 16th ``beat`` of this stream's bar is the beat before a strong beat (2 and 4
        in 4/4): where the chord that prepares a close stands."""
        step = encoding.STEPS_PER_BEAT
        return beat % step == 0 and not self.strong_beat(beat) and self.strong_beat((beat + step) % self.bar_steps)

    def feed_chord(self, grid_step: int, chord: tuple) -> np.ndarray:
        """Feed a step whose chord was computed ahead under the player's melody note (the
        one voice the key tracker hears): no engine step at all."""
        tokens, base = chord
        self.engine.set_state(base)
        self._advance(grid_step, tokens.copy(), base, heard=(0,))
        return self.last

    def discard_chords(self) -> None:
        self.ahead.discard()


def _under_table() -> np.ndarray:
    """[voice, soprano token] -> (vocab,) mask: what alto, tenor or bass may sound under that
    soprano token: rest, or a pitch at or under the soprano's. Everything where the soprano
    is silent, or sounds below the bottom of the voice's range (a voice is never left with
    nothing but rest)."""
    table = np.ones((V, encoding.VOCAB_SIZE, encoding.VOCAB_SIZE), dtype=bool)
    pitches = np.array([encoding.token_pitch(t) for t in range(encoding.VOCAB_SIZE)])
    for voice in range(1, V):
        low = encoding.VOICE_RANGES[voice][0]
        for token in range(encoding.VOCAB_SIZE):
            top = pitches[token]
            if top >= low:
                table[voice, token] = pitches <= top  # SILENT (-1) tokens: rest, always allowed
    return table


_UNDER = _under_table()  # [voice, soprano token] -> (vocab,) mask


def _continuation(token: int) -> int:
    return encoding.hold(encoding.token_pitch(token)) if encoding.is_pitch_token(token) else encoding.REST
