"""The model's running context in the live path: whole steps (S, A, T, B) fed through the
streaming engine one token at a time, snapshots to roll back to, and chords computed ahead.
Both live modes (:mod:`bachd.live.continuation`, :mod:`bachd.live.harmonizer`) play over one Stream.
"""

from __future__ import annotations

import itertools
from typing import Optional

import numpy as np

from bachd.music import encoding, analysis
from bachd.music.keys import KeyTracker, voice_biases
from bachd.model.sampling import MAX_SILENT_STEPS, NO_REST, Sampler, root_bias

V = encoding.NUM_VOICES


def rows_per_step(units: int, most: int = 8, reference_units: int = 320) -> int:
    """The largest power of two up to ``most`` whose batched step on an LSTM of ``units``
    costs no more than ``most`` rows on one of ``reference_units`` (the work grows with the
    square of the width)."""
    group = most
    while group > 1 and group * units * units > most * reference_units * reference_units:
        group //= 2
    return group


class Stream:
    """The model's running context: feeds whole steps (S, A, T, B) through the engine,
    taking the tokens it is given and sampling the rest, with snapshots for rolling back.

    The soprano's logits for the next step are computed ahead (:meth:`prepare`), so
    harmonizing a melody note costs three engine steps (alto, tenor, bass), or none when its
    chord was computed ahead (:meth:`chords_ahead`).

    Alto, tenor and bass stay at or under the soprano (``_under_table``): under a
    melody a harmony note above it sounds like a wrong note, whatever the model's odds. The
    model crosses there on about 0.5 % of steps.

    A sampled soprano may not let all four voices rest for more than
    :data:`~bachd.model.sampling.MAX_SILENT_STEPS` in a row, as in offline generation: an answer
    that falls silent comes back in.

    Sampled voices are held to the key of what the player has played so far
    (:class:`KeyTracker`, named again at the end of every beat) by the sampler's
    ``key_pull``, ``inner_pull`` and ``minor_pull``; a model with the key input is told that key ("not
    known" until one is named). The tracker hears the voices a step was given (``known``),
    not the ones bachd drew: counting its own harmony let bachd's guesses steer the key it
    was pulled toward. Under Bach's melodies the tracker named the key of his last four bars
    30 % of the time that way, and 50 % from the melody alone. So a continue-mode answer,
    which is bachd's alone, keeps the key of the call.

    Grid step 0 is a downbeat (the transport's Start, or song position 0): the model is told
    each step's 16th within a 4/4 bar.
    """

    # Candidates drawn together when computing chords ahead (8 cost about what 4 do).
    chord_group = 8
    # A melody note that comes in during a batched engine step waits for it, so a step is
    # kept to what eight rows cost a 2x320 model (about half a millisecond on two cores):
    # a 2x448 model steps its eight candidates four at a time (eight took a millisecond and,
    # through JACK, put one harmony in ten a period late). The draws are the same.
    step_reference_units = 320
    bar_steps = encoding.STEPS_PER_BAR

    def __init__(self, engine, sampler: Sampler):
        self.engine, self.sampler = engine, sampler
        # Chords ahead draw from their own generator (same seed, another stream of it), so
        # what the foreground plays does not depend on how much spare time there was.
        self._ahead_sampler = sampler.spawn(1)
        # Chords ahead need a second engine on the same weights, batched over candidates.
        units = getattr(getattr(engine, "config", None), "lstm_units", self.step_reference_units)
        self.set_step_rows(rows_per_step(units, self.chord_group, self.step_reference_units))
        self._versions = itertools.count()
        self.reset()

    def set_sampling(self, config) -> None:
        """New sampling settings for every draw from now on; chords drawn ahead under the
        old ones are dropped."""
        self.sampler.config = self._ahead_sampler.config = config
        self._set_bias()
        self.discard_chords()
        self.version = next(self._versions)  # a job computing chords ahead starts over

    def restart(self) -> None:
        """As at launch: an empty context and the random draws started over from the seed."""
        self.reset()
        self.sampler.reseed()
        self._ahead_sampler.reseed()

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
        self.discard_chords()
        self.version = next(self._versions)

    def reset(self) -> None:
        self.engine.reset()
        self.prev = encoding.BOS
        self.last = np.full(V, encoding.REST, np.int64)
        self.grid_step: Optional[int] = None
        self.silent_steps = 0  # steps in a row, up to the last one, with all four voices resting
        self._base = self.engine.get_state()  # state before the previous token is consumed
        self._logits0: Optional[np.ndarray] = None
        self._beat0 = -1
        self._after0: Optional[list] = None
        self.version = next(self._versions)  # names the context; a restore brings its version back
        self._chords: dict[tuple[int, int], dict[int, tuple]] = {}
        self.keys = KeyTracker()
        self.bias: Optional[np.ndarray] = None  # (4, vocab): per voice, added to the logits of sampled voices
        self._set_bias()

    def snapshot(self) -> tuple:
        return (
            self._base, self.prev, self.last.copy(), self.grid_step, self.silent_steps,
            self._logits0, self._beat0, self._after0, self.version, self.keys.state(),
        )

    def restore(self, snapshot: tuple) -> None:
        (
            self._base, self.prev, last, self.grid_step, self.silent_steps,
            self._logits0, self._beat0, self._after0, self.version, keys,
        ) = snapshot
        self.last = last.copy()
        self.keys.set_state(keys)
        self._set_bias()
        self.engine.set_state(self._after0 if self._logits0 is not None else self._base)

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
        for voice in range(V):
            if voice:
                logits = self.engine.step(np.array([tokens[voice - 1]]), voice, beat)[0]
            if voice in known:
                tokens[voice] = known[voice]
            else:
                rule = restrict if restrict is None or restrict.ndim == 1 else restrict[voice]
                if voice == 0 and self.silent_steps >= MAX_SILENT_STEPS:
                    rule = NO_REST if rule is None else rule & NO_REST
                elif voice:
                    under = _UNDER[voice][tokens[0]]
                    rule = under if rule is None else rule & under
                pulled = logits if self.bias is None else logits + self.bias[voice]
                tokens[voice] = self.sampler.sample(
                    pulled[None], voice, self.last[voice : voice + 1], rule, before=self.last, above=tokens[:voice],
                    pitch_bias=self._root_bias(voice, beat, tokens[None, :voice]),
                )[0][0]
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
        self.grid_step = grid_step
        self._base = base
        self._logits0 = self._after0 = None
        self.version = next(self._versions)

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
        for engine in self._chord_engines or ():
            engine.set_key(row)

    # --- chords ahead -----------------------------------------------------------------------
    def set_step_rows(self, rows: int) -> None:
        """Step the chords ahead ``rows`` candidates at a time (a divisor of ``chord_group``);
        they are drawn ``chord_group`` at a time whatever the bites."""
        self.step_rows = rows
        self._chord_engines = ([self.engine.spawn(rows) for _ in range(self.chord_group // rows)]
                               if hasattr(self.engine, "spawn") else None)

    # In harmonize mode a melody note would cost three engine steps (alto, tenor, bass) on
    # the critical path. Between notes there is time to spare, so the chord the model would
    # sample under each likely next melody note is computed ahead, batched over candidates.
    # A chord is the model's own sample given the melody note, as the critical path would
    # have drawn it; it is keyed by the context's version and beat, so a stale one is never
    # used. On a strong beat there is more: ``chord_draws`` chords are drawn under each
    # melody note and the one that closes best is kept (:class:`Closing`), so a melody that
    # ends its phrase there finds a cadence under it about as often as Bach wrote one. On
    # the beat before, a melody note on the key's 2nd or 7th gets as many, and the chord
    # that prepares a close is kept (:class:`Preparing`); a root-position dominant kept there
    # stands until the strong beat while the melody holds (:meth:`Preparing.standing`).

    def chords_ahead(self, soprano_tokens: list[int], restrict: Optional[np.ndarray]):
        """A generator that computes the chord sampled under each of ``soprano_tokens`` at the
        next step, one batched engine step or one batched draw per ``next()`` (None when there
        is nothing to do). The caller interleaves it with its real work."""
        if self._chord_engines is None or self.grid_step is None:
            return None
        beat = (self.grid_step + 1) % self.bar_steps
        table = self._chords.get((self.version, beat))
        todo = [t for t in soprano_tokens if table is None or t not in table]
        return self._compute_chords(todo, restrict, beat) if todo else None

    def _compute_chords(self, todo: list[int], restrict: Optional[np.ndarray], beat: int):
        self.prepare(beat)
        key, start, last = (self.version, beat), self._after0, self.last.copy()
        table = self._chords.setdefault(key, {})
        while len(self._chords) > 4:  # the current context and a few it may be rolled back to
            del self._chords[next(iter(self._chords))]
        engines, group, rows = self._chord_engines, self.chord_group, self.step_rows
        draws, ranking, extra = self.sampler.config.chord_draws, None, []
        if draws > 1 and self.strong_beat(beat):
            ranking, extra = Closing(last, self.keys.key), todo
        elif draws > 1 and self.upbeat(beat):
            ranking = Preparing(self.keys.key)
            extra = [token for token in todo if ranking.prepares(token)]
        best: dict[int, tuple] = {}  # soprano token -> rank of the chord kept for it
        # One chord under every candidate first (nearest melody notes first), so that each
        # has one soon; then the further draws.
        todo = todo + [token for token in extra for _ in range(draws - 1)]
        for first in range(0, len(todo), group):
            chunk = todo[first : first + group]
            tokens = np.empty((group, V), np.int64)
            tokens[:, 0] = chunk + chunk[-1:] * (group - len(chunk))
            for engine in engines:
                engine.set_state(start)
            before = np.broadcast_to(last, (group, V))
            for voice in range(1, V):
                parts = []
                for part, engine in enumerate(engines):  # a bite each
                    parts.append(engine.step(tokens[part * rows : (part + 1) * rows, voice - 1], voice, beat))
                    yield
                logits = parts[0] if len(parts) == 1 else np.concatenate(parts)
                if self.bias is not None:
                    logits = logits + self.bias[voice]
                previous = np.full(group, last[voice], np.int64)
                rule = _UNDER[voice][tokens[:, 0]]
                if restrict is not None:
                    rule = rule & restrict
                tokens[:, voice] = self._ahead_sampler.sample(
                    logits, voice, previous, rule, before=before, above=tokens[:, :voice],
                    pitch_bias=self._root_bias(voice, beat, tokens[:, :voice]),
                )[0]
                yield  # the draw, a bite of its own
            states = [engine.get_state() for engine in engines]
            for row, soprano in enumerate(chunk):
                score = ranking.rank(tokens[row]) if ranking is not None else (0, False)
                if soprano not in best or score > best[soprano]:  # ties: the earlier draw
                    best[soprano] = score
                    part, index = divmod(row, rows)
                    table[soprano] = (tokens[row].copy(), [a[index : index + 1].copy() for a in states[part]])

    def strong_beat(self, beat: int) -> bool:
        """Whether 16th ``beat`` of this stream's bar is a strong beat (:func:`bachd.music.encoding.strong_beat`)."""
        return encoding.strong_beat(beat, self.bar_steps)

    def upbeat(self, beat: int) -> bool:
        """Whether 16th ``beat`` of this stream's bar is the beat before a strong beat (2 and 4
        in 4/4): where the chord that prepares a close stands."""
        step = encoding.STEPS_PER_BEAT
        return beat % step == 0 and not self.strong_beat(beat) and self.strong_beat((beat + step) % self.bar_steps)

    def chord_for(self, grid_step: int, soprano_token: int) -> Optional[tuple]:
        """The chord computed ahead for ``soprano_token`` at ``grid_step``, if there is one
        for the current context."""
        if self.grid_step is None or grid_step != self.grid_step + 1:
            return None
        table = self._chords.get((self.version, grid_step % self.bar_steps))
        return None if table is None else table.get(soprano_token)

    def feed_chord(self, grid_step: int, chord: tuple) -> np.ndarray:
        """Feed a step whose chord was computed ahead under the player's melody note (the
        one voice the key tracker hears): no engine step at all."""
        tokens, base = chord
        self.engine.set_state(base)
        self._advance(grid_step, tokens.copy(), base, heard=(0,))
        return self.last

    def discard_chords(self) -> None:
        self._chords.clear()


class Closing:
    """How well a chord drawn for a strong beat closes after ``last`` (the tokens sounding
    before it) in ``key`` (None: not named yet): 0 unless every voice sounds a complete
    triad or seventh; 1 if it does, in any inversion; 2 if it is a major or minor triad in
    root position that ends a V-I or IV-I (``last`` a complete triad or seventh in root
    position a fifth above or below); 3 if that close is on the key's tonic. The live
    harmonizer cannot know which melody note ends a phrase, so on every strong beat it
    prefers, among a few of the model's own draws, the one that could; and of two that close
    alike, the one whose notes all lie in the key's scale (:meth:`rank`). Root position
    counts only where it closes: preferring it on every strong beat put the bass on the root
    of 81 % of the triads on the beat, against Bach's 71 %, for no more closes."""

    def __init__(self, last: np.ndarray, key) -> None:
        self.tonic = None if key is None else key[0]
        # As analysis.cadence tests it, with the chord before found once for all the draws.
        self.before = analysis.rooted(encoding.token_pitches(last), analysis.CHORDS)
        self.scale = None if key is None else analysis.scale_mask(key)

    def rank(self, tokens: np.ndarray) -> tuple[int, bool]:
        """(:meth:`score`, whether every note sounding lies in the key's scale): the draw
        that ranks highest is played."""
        pitches = encoding.token_pitches(tokens)
        return self._score(pitches), _in_scale(pitches, self.scale)

    def score(self, tokens: np.ndarray) -> int:
        return self._score(encoding.token_pitches(tokens))

    def _score(self, pitches: np.ndarray) -> int:
        root = analysis.rooted(pitches, analysis.MAJOR_MINOR)
        if root is None:
            return int(analysis.complete(pitches))
        if self.before is None or (self.before - root) % 12 not in (5, 7):
            return 1
        return 3 if root == self.tonic else 2


class Preparing:
    """How well a chord drawn for the beat before a strong beat prepares a close in ``key``
    (None: not named yet). A chorale's phrase mostly ends with its melody falling from the
    key's 2nd or rising from its 7th to the tonic, over V-I; the live harmonizer cannot know
    which such note ends a phrase, so under those two (:meth:`prepares`) it prefers, among a
    few of the model's own draws, a chord that can lead into a close: the key's dominant (a
    major triad or dominant seventh) in root position, then any complete chord in root
    position; of two alike, the one whose notes all lie in the key's scale (:meth:`rank`).
    Under any other melody note the model's one draw is played."""

    degrees = (2, 11)  # semitones over the tonic: the 2nd and the leading tone

    def __init__(self, key) -> None:
        self.key = key
        self.dominant = None if key is None else (key[0] + 7) % 12
        self.scale = None if key is None else analysis.scale_mask(key)

    def prepares(self, soprano_token: int) -> bool:
        """Whether a melody note ``soprano_token`` gets the extra draws."""
        if self.key is None or not encoding.is_pitch_token(soprano_token):
            return False
        return (encoding.token_pitch(soprano_token) - self.key[0]) % 12 in self.degrees

    def standing(self, tokens: np.ndarray) -> Optional[np.ndarray]:
        """When ``tokens``, drawn under a melody note this prepares, are the key's dominant
        in root position: the (voices, vocab) masks that keep it standing until the strong
        beat while the melody holds (the bass holds its root; the alto and tenor hold, or
        move within the dominant seventh chord); else None. Passing notes in those 16ths
        took the chord before the close off its root in as many phrase ends as the draws
        won."""
        pitches = encoding.token_pitches(tokens)
        if self.dominant is None or analysis.rooted(pitches, _DOMINANTS) != self.dominant:
            return None
        tones = [(self.dominant + i) % 12 for i in (0, 4, 7, 10)]
        masks = np.ones((V, encoding.VOCAB_SIZE), bool)
        masks[1 : V - 1] = (_TOKEN_PITCHES != encoding.SILENT) & np.isin(_TOKEN_PITCHES % 12, tones)
        masks[V - 1] = False
        masks[V - 1, encoding.hold(int(pitches[V - 1]))] = True
        return masks

    def rank(self, tokens: np.ndarray) -> tuple[int, bool]:
        pitches = encoding.token_pitches(tokens)
        in_key = _in_scale(pitches, self.scale)
        if self.dominant is not None and analysis.rooted(pitches, _DOMINANTS) == self.dominant:
            return 2, in_key
        return (1 if analysis.rooted(pitches, analysis.CHORDS) is not None else 0), in_key


_DOMINANTS = [frozenset((0, 4, 7)), frozenset((0, 4, 7, 10))]  # a major triad or a dominant seventh
_TOKEN_PITCHES = encoding.token_pitches(np.arange(encoding.VOCAB_SIZE))  # token -> pitch; SILENT: no pitch


def _in_scale(pitches: np.ndarray, scale: Optional[np.ndarray]) -> bool:
    """Whether every sounding pitch lies in ``scale`` ((12,) bool; None: no key named yet)."""
    return scale is not None and bool(scale[pitches[pitches != encoding.SILENT] % 12].all())


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
