"""Choosing tokens from logits: temperature, top-p and hard per-voice constraints.

Rhythm and pitch are drawn apart. Whether a sounding voice holds its note is decided first,
at the model's own odds (sharpened or flattened only by ``rhythm_temperature``, 1 by
default); temperature and top-p then shape only which new note or rest comes. A single
draw with temperature below 1 and a nucleus would favour "hold" at every step, since hold
is the likeliest token on most 16ths: voices then move half as often as Bach's and chords
stick (``bachd eval --music`` shows it), and that pull compounds step after step.

Pure numpy, no TensorFlow: the constraints are musical rules that must hold whatever the
model says. A voice stays in its range, and a hold may only continue the pitch the same
voice is already sounding (no hold after a rest, no hold that jumps). With
``avoid_parallels`` (the default), a lower voice may not move in parallel fifths or octaves
with a voice above it that has already been chosen at this step: the rule of four-part
writing that a sampled model breaks most often (see ``bachd eval --music``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from bachd import encoding


@dataclass(frozen=True)
class SamplingConfig:
    temperature: float = 1.0
    top_p: float = 0.95
    voice_ranges: tuple[tuple[int, int], ...] = field(default=encoding.VOICE_RANGES)
    avoid_parallels: bool = True
    rhythm_temperature: float = 1.0

    def validate(self) -> "SamplingConfig":
        if not self.temperature > 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}")
        if not self.rhythm_temperature > 0:
            raise ValueError(f"rhythm temperature must be positive, got {self.rhythm_temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top-p must be in (0, 1], got {self.top_p}")
        return self


class Sampler:
    """Samples one token per stream from (batch, vocab) logits for a given voice."""

    def __init__(self, config: SamplingConfig, rng_seed: int | None = None):
        self.config = config.validate()
        self.rng = np.random.default_rng(rng_seed)
        vocab = encoding.VOCAB_SIZE
        self._base = np.zeros((encoding.NUM_VOICES, vocab), dtype=bool)
        for voice, (low, high) in enumerate(config.voice_ranges):
            self._base[voice, encoding.REST] = True
            for pitch in range(max(low, encoding.PITCH_LOW), min(high, encoding.PITCH_HIGH) + 1):
                self._base[voice, encoding.attack(pitch)] = True
        self._allowed_index = [np.flatnonzero(row) for row in self._base]
        self.log_probs = True  # the live path turns this off: it never looks at them

    def allowed(self, voice: int, previous: np.ndarray) -> np.ndarray:
        """(batch, vocab) mask of tokens allowed for ``voice`` after each stream's ``previous``
        token of the same voice."""
        previous = np.asarray(previous, dtype=np.int64)
        mask = np.repeat(self._base[voice][None, :], previous.shape[0], axis=0)
        sounding = previous >= encoding.attack(encoding.PITCH_LOW)
        rows = np.nonzero(sounding)[0]
        # attack(p) and hold(p) are adjacent: hold(p) = attack(p) + 1.
        holds = previous[rows] - ((previous[rows] - encoding.attack(encoding.PITCH_LOW)) % 2) + 1
        mask[rows, holds] = True
        return mask

    def sample(
        self, logits: np.ndarray, voice: int, previous: np.ndarray, restrict: np.ndarray | None = None,
        before: np.ndarray | None = None, above: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Sampled tokens (batch,) and their log-probabilities under the unmodified model.

        ``restrict`` is an extra (vocab,) or (batch, vocab) mask a caller may impose, for
        example "no new note" while a live melody rests. A stream left with nothing allowed
        falls back to REST. ``before`` (batch, 4), the previous step's tokens, and ``above``
        (batch, voice), this step's tokens of the voices above, enable the parallels rule;
        where it would leave nothing allowed, it is dropped for that stream.
        """
        logits = np.asarray(logits, dtype=np.float64)
        parallels = None
        if self.config.avoid_parallels and voice and before is not None and above is not None:
            parallels = parallel_mask(voice, np.asarray(before).reshape(-1, 4), np.asarray(above).reshape(-1, voice))
        if logits.shape[0] == 1:
            rule = None if parallels is None else parallels[0]
            token, log_prob = self._sample_one(logits[0], voice, int(np.asarray(previous).reshape(-1)[0]), restrict, rule)
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
        holding = self._draw_holds(logits, mask, previous)
        scaled = np.where(mask, logits / self.config.temperature, -np.inf)
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
        tokens = np.where(holding >= 0, holding, tokens)
        return tokens.astype(np.int32), log_probs[np.arange(len(tokens)), tokens]

    def _draw_holds(self, logits: np.ndarray, mask: np.ndarray, previous: np.ndarray) -> np.ndarray:
        """For each stream, the hold token if the voice holds at this step, else -1; a
        stream that does not hold has its hold taken out of ``mask``, so the second draw
        is among new notes and rest only."""
        previous = np.asarray(previous, dtype=np.int64).reshape(-1)
        holds = np.where(previous >= _FIRST_ATTACK, previous - ((previous - _FIRST_ATTACK) % 2) + 1, 0)
        rows = np.arange(len(previous))
        can_hold = (holds > 0) & mask[rows, holds]
        result = np.full(len(previous), -1, np.int64)
        if not can_hold.any():
            return result
        masked = np.where(mask, logits, -np.inf)
        hold_log_prob = masked[rows, holds] - _logsumexp(masked)[:, 0]
        p_hold = _rhythm_odds(np.exp(hold_log_prob), self.config.rhythm_temperature)
        alone = mask.sum(axis=-1) == 1  # the hold is the only thing allowed
        hold = can_hold & ((self.rng.random(len(previous)) < p_hold) | alone)
        result[hold] = holds[hold]
        moving = can_hold & ~hold
        mask[rows[moving], holds[moving]] = False
        return result


    def _sample_one(
        self, logits: np.ndarray, voice: int, previous: int, restrict: np.ndarray | None, rule: np.ndarray | None = None
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
        if hold >= 0 and allowed.size > 1 and allowed[-1] == hold:
            # Rhythm first, at the model's odds: hold, or choose among the rest.
            weights = np.exp(chosen - chosen.max())
            p_hold = float(weights[-1]) / float(weights.sum())
            if self.config.rhythm_temperature != 1.0:
                p_hold = _rhythm_odds(p_hold, self.config.rhythm_temperature)
            if self.rng.random() < p_hold:
                return self._result(logits, hold)
            allowed, chosen = allowed[:-1], chosen[:-1]
            probs = weights[:-1] if inverse_temperature == 1.0 else np.exp((chosen - chosen.max()) * inverse_temperature)
        else:
            probs = np.exp((chosen - chosen.max()) * inverse_temperature)
        draw = self.rng.random()
        if self.config.top_p < 1.0 and allowed.size > 1:
            order = np.argsort(-probs)
            cumulative = np.cumsum(probs[order])
            kept = int(np.searchsorted(cumulative, self.config.top_p * cumulative[-1])) + 1
            index = order[min(int(np.searchsorted(cumulative[:kept], draw * cumulative[kept - 1], side="right")), kept - 1)]
        else:
            cumulative = np.cumsum(probs)
            index = min(int(np.searchsorted(cumulative, draw * cumulative[-1], side="right")), allowed.size - 1)
        return self._result(logits, int(allowed[index]))

    def _result(self, logits: np.ndarray, token: int) -> tuple[int, float]:
        if not self.log_probs:
            return token, 0.0
        top = logits.max()
        return token, float(logits[token] - top - np.log(np.exp(logits - top).sum()))


_FIRST_ATTACK = encoding.attack(encoding.PITCH_LOW)


def _hold_of(previous: int) -> int:
    """The hold token that continues the note of token ``previous`` (a sounding token)."""
    return previous - ((previous - _FIRST_ATTACK) % 2) + 1


def _rhythm_odds(p_hold, temperature: float):
    """Probability of holding after ``temperature`` is applied to the two-way choice."""
    if temperature == 1.0:
        return p_hold
    p_hold = np.clip(p_hold, 1e-12, 1 - 1e-12)
    hold, move = p_hold ** (1.0 / temperature), (1 - p_hold) ** (1.0 / temperature)
    return hold / (hold + move)


_REST_ONLY = np.array([encoding.REST])
_PERFECT = (0, 7)  # unison/octave and fifth, as intervals modulo the octave


def parallel_mask(voice: int, before: np.ndarray, above: np.ndarray) -> np.ndarray:
    """(batch, vocab) mask: False on the attacks of ``voice`` that would move in parallel
    fifths or octaves (or unisons) with a voice above it, from the step ``before`` to this one.

    Two voices move in parallel when both change pitch in the same direction and the
    interval between them, modulo the octave, is the same perfect interval on both steps.
    Vectorised over streams, upper voices and candidate pitches: it runs once per voice
    per step on the live path.
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
    same_direction = (_PITCHES - mine) * np.sign(now - was) > 0
    forbidden = (perfect & same_interval & same_direction).any(axis=1)  # (batch, pitches)
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
    split = mine - encoding.PITCH_LOW + 1  # pitch indices from here up lie above ``mine``
    for upper in range(voice):
        was, now = encoding.token_pitch(int(before[upper])), encoding.token_pitch(int(above[upper]))
        if encoding.SILENT in (was, now) or was == now:
            continue
        interval = abs(was - mine) % 12
        if interval not in _PERFECT:
            continue
        same = _SAME_INTERVAL[_PERFECT.index(interval)][now - encoding.PITCH_LOW]
        if now > was:
            mask[_ATTACKS[split:][same[split:]]] = False
        else:
            mask[_ATTACKS[: split - 1][same[: split - 1]]] = False
    return mask


def _pitches(tokens: np.ndarray) -> np.ndarray:
    """``encoding.token_pitch`` over an array."""
    sounding = (tokens >= _FIRST_ATTACK) & (tokens < encoding.VOCAB_SIZE)
    return np.where(sounding, encoding.PITCH_LOW + (tokens - _FIRST_ATTACK) // 2, encoding.SILENT)


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
