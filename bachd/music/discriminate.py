"""Can a classifier tell bachd's pieces from Bach's? Cross-validated, by two classifiers on
two different descriptions of each piece, so that the measure is not one model's blind spot:

- **figures**: a listener's figures of each piece (voice leading, chords on the beat,
  harmonic rhythm, phrase ends as heard and their closes, lines, key clarity, texture),
  computed alike for both sets (:func:`piece_figures`);
- **intervals**: the piano roll as interval histograms: the vertical interval classes between
  each pair of voices at every sounding step, and each voice's melodic intervals
  (:func:`interval_histograms`).

Each is an L2-regularised logistic regression (numpy, Newton's method), trained on four
fifths of the pieces and tested on the fifth, five times (stratified folds). The figure is
the balanced accuracy of the out-of-fold predictions (50 %: the two sets cannot be told
apart), with a 95 % bootstrap interval over pieces; and, for the figures, which ones tell
the two sets apart (the standardised weights of a model fit on all pieces).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from bachd.music import analysis, encoding

SILENT = encoding.SILENT
V = encoding.NUM_VOICES
FOLDS = 5
Bars = Optional[tuple[Optional[int], int]]  # (phase, bar steps) of a piece, where its bar lines are known

FIGURE_LABELS = {
    "crossing": "steps with voice crossing",
    "parallels": "parallel 5ths/8ves per chord change",
    "in_key": "steps in the detected key",
    "key_clarity": "key clarity (correlation with the key's profile)",
    "changes_per_beat": "chord changes per beat",
    "held_changes_per_beat": "chord changes under held melody notes, per beat",
    "triads_on_beats": "beats on a complete major or minor triad",
    "dissonant_strong_beats": "strong beats on a dissonant chord",
    "root_position": "beat triads with the bass on the root",
    "longest_chord_beats": "longest unchanged chord (beats)",
    "phrase_ends_per_bar": "phrase ends as heard, per bar",
    "closes": "phrase ends closing V-I or IV-I",
    "wide_spacing": "over an octave S-A or A-T",
    "upper_apart": "soprano and alto more than an octave apart",
    **{f"density_{v}": f"{v} attacks per beat" for v in encoding.VOICES},
    **{f"step_{v}": f"{v}: mean melodic interval (semitones)" for v in encoding.VOICES},
    **{f"range_{v}": f"{v}: range (semitones)" for v in encoding.VOICES},
    "melody_leaps": "soprano leaps (a 4th or more) per attack",
    "weak_beat_dissonance": "off-beat 8ths on a dissonant chord",
}


def melodic_intervals(pitches: np.ndarray, attacks: np.ndarray, voice: int) -> np.ndarray:
    """The signed intervals between the notes one after another in ``voice``."""
    notes = pitches[attacks[:, voice] & (pitches[:, voice] != SILENT), voice]
    return np.diff(notes.astype(np.int64))


def _key_clarity(pitches: np.ndarray) -> float:
    sounding = pitches[pitches != SILENT]
    histogram = np.bincount(sounding % 12, minlength=12).astype(np.float64)
    centred = histogram - histogram.mean()
    spread = np.sqrt((centred**2).sum())
    return 0.0 if spread == 0 else float((analysis.KEY_PROFILES @ (centred / spread)).max())


def piece_figures(tokens: np.ndarray, bars: Bars = None) -> dict[str, float]:
    """A listener's figures of one (T, 4) piece, as rates (so pieces of other lengths compare)."""
    phase, bar_steps = bars if bars is not None else (None, encoding.STEPS_PER_BAR)
    pitches, attacks = encoding.decode_pitches(np.asarray(tokens))
    steps = max(pitches.shape[0], 1)
    beats = steps / encoding.STEPS_PER_BEAT
    counts = analysis.piece_counts(tokens, phase, bar_steps)
    full = (pitches != SILENT).all(axis=1)
    off_eighths = np.flatnonzero(((np.arange(steps) + (phase or 0)) % encoding.STEPS_PER_BEAT == 2) & full)
    figures = {
        "crossing": counts["crossing_steps"] / steps,
        "parallels": counts["parallels"] / max(counts["chord_changes"], 1),
        "in_key": counts["in_key_steps"] / max(counts["sounding_steps"], 1),
        "key_clarity": _key_clarity(pitches),
        "changes_per_beat": counts["chord_changes"] / beats,
        "held_changes_per_beat": counts["held_melody_changes"]
        / max(counts["held_melody_steps"] / encoding.STEPS_PER_BEAT, 1.0),
        "triads_on_beats": counts["triad_beats"] / max(counts["full_beats"], 1),
        "dissonant_strong_beats": counts["dissonant_strong_beats"] / max(counts["strong_beats"], 1),
        "root_position": counts["root_position_triads"] / max(counts["beat_triads"], 1),
        "longest_chord_beats": counts["longest_chord_steps"] / encoding.STEPS_PER_BEAT,
        "phrase_ends_per_bar": counts["heard_phrase_ends"] / (steps / bar_steps),
        "closes": counts["heard_closes"] / max(counts["heard_phrase_ends"], 1),
        "wide_spacing": counts["wide_steps"] / max(counts["full_steps"], 1),
        "upper_apart": float((full & (pitches[:, 0] - pitches[:, 1] > 12)).sum()) / steps,
        "melody_leaps": float((np.abs(melodic_intervals(pitches, attacks, 0)) >= 5).sum())
        / max(int(attacks[:, 0].sum()), 1),
        "weak_beat_dissonance": _share(off_eighths, lambda s: analysis.dissonant(pitches[s])),
    }
    for voice, name in enumerate(encoding.VOICES):
        figures[f"density_{name}"] = counts[f"attacks_{name}"] / beats
        moves = np.abs(melodic_intervals(pitches, attacks, voice))
        figures[f"step_{name}"] = float(moves.mean()) if moves.size else 0.0
        sounding = pitches[pitches[:, voice] != SILENT, voice]
        figures[f"range_{name}"] = float(sounding.max() - sounding.min()) if sounding.size else 0.0
    return figures


def _share(steps: np.ndarray, test) -> float:
    return sum(bool(test(int(s))) for s in steps) / len(steps) if len(steps) else 0.0


def interval_histograms(tokens: np.ndarray) -> np.ndarray:
    """The piano roll of one piece as histograms (each summing to 1): the interval class (0-11)
    between each pair of voices over the steps where both sound, and each voice's melodic
    intervals from one note to the next (-12 to 12 semitones, wider ones at the ends)."""
    pitches, attacks = encoding.decode_pitches(np.asarray(tokens))
    parts = []
    for upper in range(V):
        for lower in range(upper + 1, V):
            both = (pitches[:, upper] != SILENT) & (pitches[:, lower] != SILENT)
            classes = (pitches[both, upper] - pitches[both, lower]) % 12
            parts.append(_normalised(np.bincount(classes.astype(np.int64), minlength=12)))
    for voice in range(V):
        moves = np.clip(melodic_intervals(pitches, attacks, voice), -12, 12) + 12
        parts.append(_normalised(np.bincount(moves, minlength=25)))
    return np.concatenate(parts)


def _normalised(counts: np.ndarray) -> np.ndarray:
    total = counts.sum()
    return counts / total if total else counts.astype(np.float64)


# --- the classifier ---------------------------------------------------------------------------
def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1.0, iterations: int = 50) -> np.ndarray:
    """Weights (bias first) of an L2-regularised logistic regression by Newton's method;
    ``x`` is (n, d), standardised; ``y`` is 0 or 1."""
    design = np.hstack([np.ones((x.shape[0], 1)), x])
    weights = np.zeros(design.shape[1])
    penalty = np.full(design.shape[1], l2)
    penalty[0] = 0.0  # the bias is not pulled toward 0
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(design @ weights, -30, 30)))
        gradient = design.T @ (p - y) + penalty * weights
        hessian = (design * (p * (1 - p))[:, None]).T @ design + np.diag(penalty + 1e-9)
        step = np.linalg.solve(hessian, gradient)
        weights -= step
        if np.abs(step).max() < 1e-8:
            break
    return weights


def _standardise(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean, spread = train.mean(axis=0), train.std(axis=0)
    spread[spread == 0] = 1.0
    return (train - mean) / spread, (test - mean) / spread


def _folds(y: np.ndarray, folds: int, rng: np.random.Generator) -> np.ndarray:
    """A fold index per piece, each class dealt evenly across the folds."""
    fold = np.empty(len(y), np.int64)
    for label in (0, 1):
        members = rng.permutation(np.flatnonzero(y == label))
        fold[members] = np.arange(len(members)) % folds
    return fold


def balanced_accuracy(y: np.ndarray, predicted: np.ndarray) -> float:
    return float(np.mean([np.mean(predicted[y == label] == label) for label in (0, 1)]))


@dataclass(frozen=True)
class Verdict:
    """How well one classifier tells the two sets apart, out of fold."""

    name: str
    balanced_accuracy: float
    interval: tuple[float, float]  # 95 %, bootstrap over pieces

    def as_dict(self) -> dict:
        return {"classifier": self.name, "balanced_accuracy_pct": round(100 * self.balanced_accuracy, 1),
                "interval_pct": [round(100 * self.interval[0], 1), round(100 * self.interval[1], 1)]}


def cross_validate(x: np.ndarray, y: np.ndarray, name: str, folds: int = FOLDS, seed: int = 0,
                   resamples: int = 1000) -> Verdict:
    rng = np.random.default_rng(seed)
    fold = _folds(y, folds, rng)
    predicted = np.empty(len(y), np.int64)
    for k in range(folds):
        train, test = fold != k, fold == k
        if not test.any():
            continue
        a, b = _standardise(x[train], x[test])
        weights = fit_logistic(a, y[train].astype(np.float64))
        predicted[test] = (weights[0] + b @ weights[1:] > 0).astype(np.int64)
    score = balanced_accuracy(y, predicted)
    samples = []
    groups = [np.flatnonzero(y == label) for label in (0, 1)]
    for _ in range(resamples):  # resample pieces within each set
        chosen = np.concatenate([rng.choice(g, len(g)) for g in groups])
        samples.append(balanced_accuracy(y[chosen], predicted[chosen]))
    low, high = np.percentile(samples, [2.5, 97.5])
    return Verdict(name, score, (float(low), float(high)))


def discriminate(ours: list[np.ndarray], bach: list[np.ndarray], our_bars: Optional[list[Bars]] = None,
                 bach_bars: Optional[list[Bars]] = None, seed: int = 0, top: int = 8) -> dict:
    """How well each classifier tells ``ours`` from ``bach`` (pieces of about one length),
    and the figures that tell them apart most, with each set's mean."""
    if len(ours) < FOLDS or len(bach) < FOLDS:
        raise ValueError(f"at least {FOLDS} pieces of each set are needed to cross-validate")
    our_figures = [piece_figures(t, b) for t, b in zip(ours, our_bars or [None] * len(ours))]
    bach_figures = [piece_figures(t, b) for t, b in zip(bach, bach_bars or [None] * len(bach))]
    names = list(FIGURE_LABELS)
    x = np.array([[f[n] for n in names] for f in our_figures + bach_figures])
    y = np.array([1] * len(ours) + [0] * len(bach))
    rolls = np.array([interval_histograms(t) for t in [*ours, *bach]])
    verdicts = [cross_validate(x, y, "logistic regression on the figures", seed=seed),
                cross_validate(rolls, y, "logistic regression on the piano roll's interval histograms", seed=seed)]
    standardised, _ = _standardise(x, x)
    weights = fit_logistic(standardised, y.astype(np.float64))[1:]
    order = np.argsort(-np.abs(weights))[:top]
    telling = [{"figure": names[i], "label": FIGURE_LABELS[names[i]], "weight": round(float(weights[i]), 3),
                "bach": round(float(x[y == 0, i].mean()), 4), "bachd": round(float(x[y == 1, i].mean()), 4)}
               for i in order]
    return {"pieces": {"bachd": len(ours), "bach": len(bach)}, "classifiers": [v.as_dict() for v in verdicts],
            "telling_figures": telling}
