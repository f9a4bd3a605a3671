"""Choosing tokens from logits: temperature, top-p and hard per-voice constraints.

Rhythm and pitch are drawn apart. For a sounding voice, whether it holds its note, strikes
the same pitch again or moves is decided first, at the model's own odds (sharpened or
flattened only by ``rhythm_temperature``, 1 by default); temperature and top-p then shape
only where a moving voice goes. In a single draw, temperature below 1 and a nucleus favour
"hold" (the likeliest token on most 16ths) and then the re-strike (the likeliest "new"
note): voices move less often than Bach's and chords stand still (``bachd eval --music``
shows it), and that pull compounds step after step.

Pure numpy, no TensorFlow: the constraints are musical rules that must hold whatever the
model says. A voice stays in its range, and a hold may only continue the pitch the same
voice is already sounding (no hold after a rest, no hold that jumps). With
Unless ``allow_parallels``, a lower voice may not move in parallel fifths or octaves
(in similar or contrary motion) with a voice above it that has already been chosen at this
step, and the bass may not reach a fifth or octave with a leaping soprano in similar motion
(hidden fifths and octaves): the rules of four-part writing that a sampled model breaks
most often (see ``bachd eval --music``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from bachd.music import encoding
from bachd.settings import SAMPLING, SETTINGS, check


@dataclass(frozen=True)
class SamplingConfig:
    """How tokens are drawn; the defaults and bounds are the settings' (:mod:`bachd.settings`)."""

    temperature: float = SETTINGS["temperature"].default
    top_p: float = SETTINGS["top_p"].default
    voice_ranges: tuple[tuple[int, int], ...] = field(default=encoding.VOICE_RANGES)
    allow_parallels: bool = SETTINGS["allow_parallels"].default
    rhythm_temperature: float = SETTINGS["rhythm_temperature"].offline_default()
    key_pull: float = SETTINGS["key_pull"].offline_default()
    minor_pull: float = SETTINGS["minor_pull"].offline_default()
    inner_pull: float = SETTINGS["inner_pull"].offline_default()
    root_pull: float = SETTINGS["root_pull"].offline_default()
    max_chord_beats: float = SETTINGS["max_chord_beats"].offline_default()
    cadence_hold: float = SETTINGS["cadence_hold"].offline_default()
    away_hold: float = SETTINGS["away_hold"].offline_default()
    compass_pull: float = SETTINGS["compass_pull"].offline_default()
    interval_calibration: float = SETTINGS["interval_calibration"].offline_default()
    chord_draws: int = SETTINGS["chord_draws"].offline_default()

    def validate(self) -> SamplingConfig:
        for name in SAMPLING:
            check(name, getattr(self, name), "sampling")
        return self


class Sampler:
    """Samples one token per stream from (batch, vocab) logits for a given voice."""

    def __init__(self, config: SamplingConfig, rng_seed: int | None = None, stream_key: int = 0):
        self.config = config.validate()
        self.rng_seed, self.stream_key = rng_seed, stream_key
        self.reseed()
        vocab = encoding.VOCAB_SIZE
        self._base = np.zeros((encoding.NUM_VOICES, vocab), dtype=bool)
        for voice, (low, high) in enumerate(config.voice_ranges):
            self._base[voice, encoding.REST] = True
            for pitch in range(max(low, encoding.PITCH_LOW), min(high, encoding.PITCH_HIGH) + 1):
                self._base[voice, encoding.attack(pitch)] = True
        self._allowed_index = [np.flatnonzero(row) for row in self._base]
        self.log_probs = True  # the live path turns this off: it never looks at them

    def reseed(self) -> None:
        """Start the random draws over from the seed (no seed: fresh entropy)."""
        if self.rng_seed is None:
            self.rng = np.random.default_rng()
        elif self.stream_key == 0:
            self.rng = np.random.default_rng(self.rng_seed)
        else:
            self.rng = np.random.default_rng(np.random.SeedSequence(self.rng_seed, spawn_key=(self.stream_key,)))

    def spawn(self, stream_key: int) -> Sampler:
        """A sampler with the same rules and its own generator, derived from the same seed:
        draws made on one never move the other's."""
        twin = Sampler(self.config, self.rng_seed, stream_key)
        twin.log_probs = self.log_probs
        return twin

    def allowed(self, voice: int, previous: np.ndarray) -> np.ndarray:
        """(batch, vocab) mask of tokens allowed for ``voice`` after each stream's ``previous``
        token of the same voice."""
        previous = np.asarray(previous, dtype=np.int64)
        mask = np.repeat(self._base[voice][None, :], previous.shape[0], axis=0)
        sounding = previous >= encoding.attack(encoding.PITCH_LOW)
        rows = np.nonzero(sounding)[0]
        # attack(p) and hold(p) are adjacent: hold(p) = attack(p) + 1.
        mask[rows, _hold_of(previous[rows])] = True
        return mask

    def sample(
        self, logits: np.ndarray, voice: int, previous: np.ndarray, restrict: np.ndarray | None = None,
        before: np.ndarray | None = None, above: np.ndarray | None = None, pitch_bias: np.ndarray | None = None,
        hold_bias: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Sampled tokens (batch,) and their log-probabilities under the unmodified model.

        ``restrict`` is an extra (vocab,) or (batch, vocab) mask a caller may impose, for
        example "no new note" while a live melody rests. A stream left with nothing allowed
        falls back to REST. ``before`` (batch, 4), the previous step's tokens, and ``above``
        (batch, voice), this step's tokens of the voices above, enable the parallels rule;
        where it would leave nothing allowed, it is dropped for that stream. ``pitch_bias``,
        (vocab,) or (batch, vocab), is added to the logits of the pitch draw only, once the
        rhythm draw has decided that the voice moves (or where it has no note to hold).
        ``hold_bias`` (batch,) adds that many nats to holding the note in the rhythm draw.
        """
        logits = np.asarray(logits, dtype=np.float64)
        parallels = None
        if not self.config.allow_parallels and voice and before is not None and above is not None:
            parallels = parallel_mask(voice, np.asarray(before).reshape(-1, 4), np.asarray(above).reshape(-1, voice))
        if logits.shape[0] == 1:
            rule = None if parallels is None else parallels[0]
            bias = None if pitch_bias is None else np.asarray(pitch_bias).reshape(-1, logits.shape[-1])[0]
            hold = 0.0 if hold_bias is None else float(np.asarray(hold_bias).reshape(-1)[0])
            token, log_prob = self._sample_one(
                logits[0], voice, int(np.asarray(previous).reshape(-1)[0]), restrict, rule, bias, hold
            )
            return np.array([token], np.int32), np.array([log_prob])
        log_probs = logits - _logsumexp(logits)
        mask = self.allowed(voice, previous)
        if restrict is not None:
            mask &= restrict
            mask[~mask.any(axis=-1), encoding.REST] = True
        if parallels is not None:
            ruled = mask & parallels
            keep = ruled.any(axis=-1)
            mask[keep] = ruled[keep]
        staying = self._draw_stays(logits, mask, previous, hold_bias)
        pitch_logits = logits if pitch_bias is None else logits + pitch_bias
        scaled = np.where(mask, pitch_logits / self.config.temperature, -np.inf)
        probs = np.exp(scaled - _logsumexp(scaled))
        if self.config.top_p < 1.0:
            probs = _top_p(probs, self.config.top_p)
        cumulative = np.cumsum(probs, axis=-1)
        draws = self.rng.random((probs.shape[0], 1)) * cumulative[:, -1:]
        tokens = np.minimum((cumulative < draws).sum(axis=-1), probs.shape[1] - 1)
        # Guard against float round-off landing on a zero-probability token.
        bad = ~mask[np.arange(len(tokens)), tokens]
        if np.any(bad):
            tokens[bad] = np.argmax(probs[bad], axis=-1)
        tokens = np.where(staying >= 0, staying, tokens)
        return tokens.astype(np.int32), log_probs[np.arange(len(tokens)), tokens]

    def _draw_stays(self, logits: np.ndarray, mask: np.ndarray, previous: np.ndarray, hold_bias=None) -> np.ndarray:
        """For each stream whose voice is sounding, the rhythm draw at the model's odds:
        hold the note, strike the same pitch again, or move. Returns the hold or re-strike
        token, or -1 where the voice moves (or is silent); a stream that moves has both
        taken out of ``mask``, so the second draw is among other notes and rest only."""
        previous = np.asarray(previous, dtype=np.int64).reshape(-1)
        rows = np.arange(len(previous))
        sounding = previous >= _FIRST_ATTACK
        holds = np.where(sounding, _hold_of(previous), encoding.REST)
        strikes = np.where(sounding, holds - 1, encoding.REST)
        can_hold = sounding & mask[rows, holds]
        can_strike = sounding & mask[rows, strikes]
        result = np.full(len(previous), -1, np.int64)
        deciding = can_hold | can_strike
        if not deciding.any():
            return result
        masked = np.where(mask, logits, -np.inf)
        total = _logsumexp(masked)[:, 0]
        p_hold = np.where(can_hold, np.exp(masked[rows, holds] - total), 0.0)
        p_strike = np.where(can_strike, np.exp(masked[rows, strikes] - total), 0.0)
        p_hold, p_strike = _rhythm_odds(p_hold, p_strike, self.config.rhythm_temperature)
        if hold_bias is not None:
            p_hold, p_strike = _lean_to_hold(p_hold, p_strike, np.asarray(hold_bias, dtype=np.float64).reshape(-1))
        draw = self.rng.random(len(previous))
        others = mask.sum(axis=-1) - can_hold - can_strike
        # Where nothing else is allowed, the voice stays whatever the (rounded) draw says.
        hold = deciding & ((draw < p_hold) | ((others == 0) & ~can_strike))
        strike = deciding & ~hold & can_strike & ((draw < p_hold + p_strike) | (others == 0))
        result[hold] = holds[hold]
        result[strike] = strikes[strike]
        moving = deciding & ~hold & ~strike
        mask[rows[moving], holds[moving]] = False
        mask[rows[moving], strikes[moving]] = False
        return result

    def _sample_one(
        self,
        logits: np.ndarray,
        voice: int,
        previous: int,
        restrict: np.ndarray | None,
        rule: np.ndarray | None = None,
        pitch_bias: np.ndarray | None = None,
        hold_bias: float = 0.0,
    ) -> tuple[int, float]:
        """One stream, on 1-D arrays and with as few numpy calls as possible: the live path,
        where each call's overhead counts. Same distribution as the batched path."""
        allowed = self._allowed_index[voice]
        hold = _hold_of(previous) if previous >= _FIRST_ATTACK else -1
        if hold >= 0:
            allowed = np.append(allowed, hold)
        if restrict is not None:
            allowed = allowed[restrict.reshape(-1)[allowed]]
            if allowed.size == 0:
                allowed = _REST_ONLY
        if rule is not None:
            ruled = allowed[rule[allowed]]
            allowed = ruled if ruled.size else allowed
        chosen = logits[allowed]
        inverse_temperature = 1.0 / self.config.temperature
        probs = None
        if hold >= 0 and allowed.size > 1:
            # Rhythm first, at the model's odds: hold, strike the same pitch again, or move.
            # ``allowed`` is sorted but for the hold appended last; the re-strike sits in it.
            has_hold = allowed[-1] == hold
            at = int(np.searchsorted(allowed[:-1] if has_hold else allowed, hold - 1))
            has_strike = at < allowed.size and allowed[at] == hold - 1
            if has_hold or has_strike:
                weights = np.exp(chosen - chosen.max())
                total = float(weights.sum())
                p_hold = float(weights[-1]) / total if has_hold else 0.0
                p_strike = float(weights[at]) / total if has_strike else 0.0
                if self.config.rhythm_temperature != 1.0:
                    p_hold, p_strike = _rhythm_odds(p_hold, p_strike, self.config.rhythm_temperature)
                if hold_bias and has_hold:
                    p_hold, p_strike = _lean_to_hold(p_hold, p_strike, hold_bias)
                draw = self.rng.random()
                if draw < p_hold:
                    return self._result(logits, hold)
                if draw < p_hold + p_strike or allowed.size == int(has_hold) + int(has_strike):
                    return self._result(logits, hold - 1 if has_strike else hold)
                # The voice moves: the hold and the re-strike get no weight in the pitch draw
                # (a zero-weight token is never drawn below).
                if pitch_bias is not None:
                    chosen = chosen + pitch_bias[allowed]
                    probs = np.exp((chosen - chosen.max()) * inverse_temperature)
                else:
                    probs = (
                        weights if inverse_temperature == 1.0 else np.exp((chosen - chosen.max()) * inverse_temperature)
                    )
                if has_hold:
                    probs[-1] = 0.0
                if has_strike:
                    probs[at] = 0.0
        if probs is None:
            if pitch_bias is not None:
                chosen = chosen + pitch_bias[allowed]
            probs = np.exp((chosen - chosen.max()) * inverse_temperature)
        draw = self.rng.random()
        if self.config.top_p < 1.0 and allowed.size > 1:
            order = np.argsort(-probs)
            cumulative = np.cumsum(probs[order])
            kept = int(np.searchsorted(cumulative, self.config.top_p * cumulative[-1])) + 1
            index = order[
                min(int(np.searchsorted(cumulative[:kept], draw * cumulative[kept - 1], side="right")), kept - 1)
            ]
        else:
            cumulative = np.cumsum(probs)
            index = min(int(np.searchsorted(cumulative, draw * cumulative[-1], side="right")), allowed.size - 1)
        return self._result(logits, int(allowed[index]))

    def _result(self, logits: np.ndarray, token: int) -> tuple[int, float]:
        if not self.log_probs:
            return token, 0.0
        top = logits.max()
        return token, float(logits[token] - top - np.log(np.exp(logits - top).sum()))


# The longest all-voice silence bachd writes, in 16th steps, offline and live. Bach's
# chorales rest all four voices between phrases now and then, nearly always for one beat
# (168 of the 183 such rests in music21's chorales; 2 last two beats, 6 longer). A sampled
# model that rests once can rest for good: past two beats, the soprano has to come back in.
MAX_SILENT_STEPS = 2 * encoding.STEPS_PER_BEAT
NO_REST = np.ones(encoding.VOCAB_SIZE, dtype=bool)
NO_REST[encoding.REST] = False

_FIRST_ATTACK = encoding.attack(encoding.PITCH_LOW)


def _hold_of(previous):
    """The hold token that continues the note of token ``previous`` (a sounding token; an
    int or an array of them)."""
    return previous - ((previous - _FIRST_ATTACK) % 2) + 1


def _rhythm_odds(p_hold, p_strike, temperature: float):
    """Probabilities of holding and of re-striking after ``temperature`` is applied to the
    three-way choice hold / strike again / move (scalars or arrays)."""
    if temperature == 1.0:
        return p_hold, p_strike
    p_move = np.clip(1.0 - p_hold - p_strike, 0.0, 1.0)
    hold, strike, move = (np.power(p, 1.0 / temperature) for p in (p_hold, p_strike, p_move))
    total = hold + strike + move
    return hold / total, strike / total


def _lean_to_hold(p_hold, p_strike, nats):
    """Probabilities of holding and of re-striking once ``nats`` is added to holding's log-odds
    (scalars or arrays)."""
    p_move = np.clip(1.0 - p_hold - p_strike, 0.0, 1.0)
    hold = p_hold * np.exp(nats)
    total = hold + p_strike + p_move
    return hold / total, p_strike / total


_REST_ONLY = np.array([encoding.REST])
_PERFECT = (0, 7)  # unison/octave and fifth, as intervals modulo the octave


def parallel_mask(voice: int, before: np.ndarray, above: np.ndarray) -> np.ndarray:
    """(batch, vocab) mask: False on the attacks of ``voice`` that would move in parallel
    fifths or octaves (or unisons) with a voice above it, from the step ``before`` to this one.

    Two voices move in parallels when both change pitch and the interval between them,
    modulo the octave, is the same perfect interval on both steps: in similar motion
    (parallel fifths and octaves) or in contrary motion (antiparallel ones, a fifth to a
    twelfth, an octave to a unison). Vectorised over streams, upper voices and candidate
    pitches: it runs once per voice per step on the live path.
    """
    before = np.asarray(before, dtype=np.int64)
    above = np.asarray(above, dtype=np.int64)
    if before.shape[0] == 1:
        return _parallel_row(voice, before[0], above[0])[None, :]
    mine = _pitches(before[:, voice])[:, None, None]  # (batch, 1, 1)
    was = _pitches(before[:, :voice])[..., None]  # (batch, voice, 1)
    now = _pitches(above[:, :voice])[..., None]
    interval = np.abs(was - mine) % 12
    moving = (mine != encoding.SILENT) & (was != encoding.SILENT) & (now != encoding.SILENT) & (was != now)
    perfect = moving & ((interval == _PERFECT[0]) | (interval == _PERFECT[1]))
    same_interval = np.abs(now - _PITCHES) % 12 == interval
    moves = _PITCHES != mine  # similar or contrary motion: any move of this voice
    forbidden = (perfect & same_interval & moves).any(axis=1)  # (batch, pitches)
    if voice == encoding.NUM_VOICES - 1:
        forbidden |= _hidden(mine[:, 0, 0], was[:, 0, 0], now[:, 0, 0])
    mask = np.ones((before.shape[0], encoding.VOCAB_SIZE), dtype=bool)
    mask[:, _ATTACKS] = ~forbidden
    return mask


_PITCHES = np.arange(encoding.PITCH_LOW, encoding.PITCH_HIGH + 1)
_ATTACKS = _FIRST_ATTACK + 2 * np.arange(encoding.NUM_PITCHES)
# _SAME_INTERVAL[k][n, t]: pitch index t lies a unison/octave (k=0) or a fifth (k=1),
# simple or compound, from pitch index n.
_SAME_INTERVAL = [np.abs(_PITCHES[:, None] - _PITCHES[None, :]) % 12 == interval for interval in _PERFECT]


def _parallel_row(voice: int, before: np.ndarray, above: np.ndarray) -> np.ndarray:
    """``parallel_mask`` for one stream, with table lookups in place of array arithmetic:
    the live path calls it for every voice of every step."""
    mask = np.ones(encoding.VOCAB_SIZE, dtype=bool)
    mine = encoding.token_pitch(int(before[voice]))
    if mine == encoding.SILENT:
        return mask
    for upper in range(voice):
        was, now = encoding.token_pitch(int(before[upper])), encoding.token_pitch(int(above[upper]))
        if encoding.SILENT in (was, now) or was == now:
            continue
        interval = abs(was - mine) % 12
        if interval not in _PERFECT:
            continue
        mask[_ATTACKS[_SAME_INTERVAL[_PERFECT.index(interval)][now - encoding.PITCH_LOW]]] = False
    if voice == encoding.NUM_VOICES - 1:
        hidden = _hidden(np.array([mine]), np.array([encoding.token_pitch(int(before[0]))]),
                         np.array([encoding.token_pitch(int(above[0]))]))[0]
        mask[_ATTACKS[hidden]] = False
    mask[encoding.attack(mine)] = True  # striking the same pitch again is no motion
    return mask


def _hidden(bass: np.ndarray, soprano_was: np.ndarray, soprano_now: np.ndarray) -> np.ndarray:
    """(batch, pitches): bass pitches that would reach a fifth or octave with the soprano in
    similar motion while the soprano leaps (hidden, or direct, 5ths and 8ves of the outer
    voices). Arriving where they already were is a parallel and left to the parallels rule."""
    leaps = (bass != encoding.SILENT) & (soprano_was != encoding.SILENT) & (soprano_now != encoding.SILENT)
    leaps &= np.abs(soprano_now - soprano_was) > 2
    direction = np.sign(soprano_now - soprano_was)[:, None]
    same_way = np.sign(_PITCHES[None, :] - bass[:, None]) == direction
    arriving = np.abs(soprano_now[:, None] - _PITCHES[None, :]) % 12
    perfect = (arriving == 0) | (arriving == 7)
    already = (np.abs(soprano_was - bass) % 12)[:, None] == arriving
    return leaps[:, None] & same_way & perfect & ~already


_pitches = encoding.token_pitches


def _logsumexp(x: np.ndarray) -> np.ndarray:
    top = np.max(x, axis=-1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    return top + np.log(np.sum(np.exp(x - top), axis=-1, keepdims=True))


def _top_p(probs: np.ndarray, top_p: float) -> np.ndarray:
    """Keep the smallest set of most likely tokens whose mass reaches ``top_p``."""
    order = np.argsort(-probs, axis=-1)
    sorted_probs = np.take_along_axis(probs, order, axis=-1)
    cumulative = np.cumsum(sorted_probs, axis=-1)
    keep_sorted = (cumulative - sorted_probs) < top_p  # always keeps the most likely token
    keep = np.zeros_like(keep_sorted)
    np.put_along_axis(keep, order, keep_sorted, axis=-1)
    kept = np.where(keep, probs, 0.0)
    return kept / kept.sum(axis=-1, keepdims=True)


# --- the bass under a chord struck on the beat --------------------------------------------------
# On the beat, Bach puts the bass on the root of a major or minor triad (or of a dominant
# seventh) 71 % of the time in music21's validation chorales, and 92 % at the melody's phrase
# ends; the model sampled on its own does so less often (67 % offline, 60 % live, where it
# cannot hear where the melody goes next), and a cadence needs both of its chords in root
# position. ``root_pull`` adds that many nats to the bass notes that would put the chord in
# root position, in the pitch draw only.
_ROOTED = tuple(frozenset(chord) for chord in ((0, 4, 7), (0, 3, 7), (0, 4, 7, 10)))


def _root_table() -> np.ndarray:
    """(4096, vocab) bool: for each set of upper pitch classes (a 12-bit mask), the bass
    attacks whose pitch class is the root of a major or minor triad or dominant seventh that
    holds them all. Sets of fewer than two pitch classes name no chord: all False."""
    table = np.zeros((1 << 12, encoding.VOCAB_SIZE), dtype=bool)
    for upper in range(1 << 12):
        classes = [pc for pc in range(12) if upper >> pc & 1]
        if len(classes) < 2:
            continue
        roots = [r for r in range(12) if any({(pc - r) % 12 for pc in classes} <= chord for chord in _ROOTED)]
        for root in roots:
            table[upper, _ATTACKS[_PITCHES % 12 == root]] = True
    return table


_ROOT_TABLE = _root_table()


def root_bias(upper: np.ndarray, pull: float) -> np.ndarray:
    """(batch, vocab) logit offsets for the bass under the (batch, 3) tokens of the soprano,
    alto and tenor at this step: ``pull`` on the attacks that put the chord in root position
    (see above), 0 elsewhere."""
    pitches = _pitches(np.asarray(upper, dtype=np.int64).reshape(-1, encoding.NUM_VOICES - 1))
    bits = np.where(pitches != encoding.SILENT, 1 << (pitches % 12), 0)
    masks = np.bitwise_or.reduce(bits, axis=1, keepdims=True)[:, 0]
    return np.where(_ROOT_TABLE[masks], float(pull), 0.0)


# --- harmonic rhythm ---------------------------------------------------------------------------
# Bach rarely lets all four voices stand on one chord for long: the longest such stretch in a
# validation chorale is 2.3 beats on average (a half-note chord at a phrase end, now and
# then a longer one at the close), and the model left to itself holds a chord 3-5 beats at
# a phrase end in most pieces. ``max_chord_beats`` caps it: once a full chord has stood that
# long, on the next beat where the soprano, alto and tenor keep their pitches the bass may
# neither hold nor strike its note again, so the harmony moves.
class ChordClock:
    """How long each stream's four pitches have stood unchanged, and the bass's mask when
    that has gone on too long (``max_chord_beats``; 0: never)."""

    def __init__(self, batch: int, max_beats: float):
        self.limit = int(round(max_beats * encoding.STEPS_PER_BEAT))
        self.run = np.zeros(batch, np.int64)  # steps, up to and including the last one
        self.last = np.full((batch, encoding.NUM_VOICES), encoding.SILENT, np.int64)

    def bass_mask(self, upper: np.ndarray, bass_before: np.ndarray, on_beat: bool,
                  longer: np.ndarray | None = None) -> np.ndarray | None:
        """(batch, vocab) tokens the bass may take at this step, given the (batch, 3) tokens
        of the voices above it; None where nothing is held back. ``longer`` (batch,) bool: the
        streams whose chord may stand a beat more (a phrase's close)."""
        if not self.limit or not on_beat:
            return None
        limit = self.limit if longer is None else np.where(longer, self.limit + encoding.STEPS_PER_BEAT, self.limit)
        if not (self.run >= limit).any():
            return None
        pitches = _pitches(np.asarray(upper, dtype=np.int64).reshape(-1, encoding.NUM_VOICES - 1))
        bass_before = np.asarray(bass_before, dtype=np.int64).reshape(-1)
        stale = (
            (self.run >= limit)
            & (pitches == self.last[:, :-1]).all(axis=1)
            & (self.last != encoding.SILENT).all(axis=1)
        )
        stale &= bass_before >= _FIRST_ATTACK
        if not stale.any():
            return None
        mask = np.ones((len(stale), encoding.VOCAB_SIZE), dtype=bool)
        rows = np.flatnonzero(stale)
        hold = _hold_of(bass_before[rows])
        mask[rows, hold] = False
        mask[rows, hold - 1] = False
        return mask

    def advance(self, tokens: np.ndarray) -> None:
        """Count in one step's (batch, 4) tokens."""
        pitches = _pitches(np.asarray(tokens, dtype=np.int64).reshape(-1, encoding.NUM_VOICES))
        same = (pitches == self.last).all(axis=1)
        self.run = np.where(same, self.run + 1, 1)
        self.last = pitches


# --- compass -----------------------------------------------------------------------------------
# Over their first 16 bars, the span from a voice's lowest note to its highest in Bach's
# chorales (music21's, training and validation) is a median 12 semitones in the soprano, alto
# and tenor and 17 in the bass, nine in ten within 15, 14, 15 and 22. The model, left to
# itself, wanders about two semitones further in every voice, a melody climbing or sinking by
# steps where Bach's turns back. ``compass_pull`` takes that many nats per semitone off a note
# that would stretch its voice's span over the last 16 bars past the median, in the pitch draw
# only: a held or re-struck note is never touched, and a wide leap that stays inside is free.
COMPASS = (12, 12, 12, 17)  # semitones, soprano to bass
COMPASS_STEPS = 16 * encoding.STEPS_PER_BAR


class Compass:
    """The last ``COMPASS_STEPS`` steps' pitches of each stream, and the pitch-draw offsets that
    hold each voice to its compass."""

    def __init__(self, batch: int, pull: float, steps: int = COMPASS_STEPS):
        self.pull = pull
        self.pitches = np.full((batch, steps, encoding.NUM_VOICES), encoding.SILENT, np.int64)
        self.at = 0

    def bias(self, voice: int) -> np.ndarray | None:
        """(batch, vocab) offsets for ``voice``'s pitch draw; None where nothing is held back."""
        if not self.pull or not self.at:
            return None
        seen = self.pitches[:, :, voice]
        sounding = seen != encoding.SILENT
        if not sounding.any():
            return None
        low = np.where(sounding, seen, encoding.PITCH_HIGH).min(axis=1)[:, None]
        high = np.where(sounding, seen, encoding.PITCH_LOW).max(axis=1)[:, None]
        span = np.maximum(high, _PITCHES[None, :]) - np.minimum(low, _PITCHES[None, :])
        over = np.maximum(span - COMPASS[voice], 0)
        over[~sounding.any(axis=1)] = 0
        bias = np.zeros((seen.shape[0], encoding.VOCAB_SIZE))
        bias[:, _ATTACKS] = -self.pull * over
        return bias

    def advance(self, tokens: np.ndarray) -> None:
        """Count in one step's (batch, 4) tokens."""
        if self.pull:
            self.pitches[:, self.at % self.pitches.shape[1]] = _pitches(np.asarray(tokens, dtype=np.int64))
            self.at += 1
