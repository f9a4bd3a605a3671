"""Where the bar lines fall in music that does not say: the phase of a 4/4 bar.

The JSB and JS Fake Chorales arrays carry no bar lines. A chorale shows its metre all the
same: long notes start on the strong beats, the bass moves on them, and most chorales open
on a one-beat pickup. The estimate is for whole pieces, from their first note: how a piece
opens is part of the evidence (without that prior, 82 % of Bach's bar lines are found).
:func:`estimate_phase` scores each of the four beat positions the
first step could fall on with a linear model of those counts, fitted once on music21's
chorales, whose bar lines are known (:func:`fit_phase_weights` refits it; the test
``tests/test_metre.py`` checks it on them).
"""

from __future__ import annotations

import numpy as np

from bachd.music import encoding

_BEAT, _BAR = encoding.STEPS_PER_BEAT, encoding.STEPS_PER_BAR
CANDIDATES = tuple(range(0, _BAR, _BEAT))  # the phases tried: step 0 on beat 1, 2, 3 or 4

# Fitted by fit_phase_weights on music21's 4/4 chorales (l2 1e-3); per beat of the bar:
# attacks of S, A, T, B, notes of 2+ beats and of 3+ beats starting there, per bar; then
# the prior of each phase.
WEIGHTS = np.array([
    0.775, -1.260, 0.829, -0.344, 0.023, -0.339, 0.591, -0.275, 0.674, -0.504, 0.666, -0.836,
    0.461, -0.418, 0.429, -0.472, 2.323, -3.144, 1.865, -1.044, 0.976, -0.215, -0.517, -0.244,
    0.945, -1.697, -3.161, 3.913,
])


# The pickups of music21's 371 chorales, in 16ths before the first downbeat
# (tests/test_metre.py recounts them): two in three open on a one-beat pickup.
BACH_PICKUPS = {0: 119, 4: 250, 6: 1, 8: 1}


def draw_opening(rng: np.random.Generator, bar_steps: int = _BAR) -> int:
    """Where a piece from nothing starts in its bar (the phase of its first step), drawn
    from Bach's pickups."""
    pickups = list(BACH_PICKUPS)
    weights = np.array([BACH_PICKUPS[p] for p in pickups], dtype=np.float64)
    return (bar_steps - pickups[int(rng.choice(len(pickups), p=weights / weights.sum()))]) % bar_steps


def note_lengths(tokens: np.ndarray) -> np.ndarray:
    """(T, 4): at each attack, the length in steps of the note it starts; 0 elsewhere."""
    tokens = np.asarray(tokens)
    lengths = np.zeros((tokens.shape[0], encoding.NUM_VOICES), np.int64)
    for note in encoding.tokens_to_notes(tokens):
        lengths[note.start_step, note.voice] = note.end_step - note.start_step
    return lengths


def phase_features(tokens: np.ndarray) -> np.ndarray:
    """(4, F): the features of each candidate phase."""
    lengths = note_lengths(tokens)
    steps = len(lengths)
    bars = max(steps / _BAR, 1.0)
    rows = []
    for candidate, phase in enumerate(CANDIDATES):
        position = (np.arange(steps) + phase) % _BAR
        on_beat = position % _BEAT == 0
        beat = position // _BEAT
        parts = [np.bincount(beat[on_beat], weights=(lengths[on_beat, v] > 0).astype(float), minlength=4)
                 for v in range(encoding.NUM_VOICES)]
        parts.append(
            np.bincount(beat[on_beat], weights=(lengths[on_beat] >= 2 * _BEAT).sum(1).astype(float), minlength=4)
        )
        parts.append(
            np.bincount(beat[on_beat], weights=(lengths[on_beat] >= 3 * _BEAT).sum(1).astype(float), minlength=4)
        )
        features = np.concatenate(parts) / bars
        rows.append(np.concatenate([features, np.eye(len(CANDIDATES))[candidate]]))
    return np.array(rows)


def estimate_phase(tokens: np.ndarray, weights: np.ndarray | None = None) -> int:
    """Where step 0 of a 4/4 piece most likely falls within its bar, in steps (0, 4, 8, 12)."""
    scores = phase_features(tokens) @ (WEIGHTS if weights is None else weights)
    return CANDIDATES[int(np.argmax(scores))]


def fit_phase_weights(features: np.ndarray, truth: np.ndarray, l2: float = 1e-3, iterations: int = 3000) -> np.ndarray:
    """A conditional-logit fit: ``features`` (N, 4, F), ``truth`` (N,) the index of the right
    candidate. Plain gradient descent; the problem is small and convex."""
    weights = np.zeros(features.shape[2])
    rows = np.arange(len(truth))
    for _ in range(iterations):
        scores = features @ weights
        scores -= scores.max(axis=1, keepdims=True)
        p = np.exp(scores)
        p /= p.sum(axis=1, keepdims=True)
        gradient = -(features[rows, truth] - np.einsum("nk,nkf->nf", p, features)).mean(axis=0) + l2 * weights
        weights -= 0.5 * gradient
    return weights
