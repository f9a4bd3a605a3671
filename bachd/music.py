"""Musical checks of four-voice music on the 16th grid, for real chorales and generated ones.

Each figure is computed the same way for the corpus and for a model's output, so the gap
between them is what the report shows:

- voice crossing: share of steps where a voice sounds below the next lower voice;
- parallel fifths and octaves: per 100 steps, between adjacent steps, for every pair of
  voices that both move in the same direction from one perfect interval to the same one;
  and the same in contrary motion (antiparallels: a fifth to a twelfth, an octave to a
  unison), counted apart;
- out of range: share of sounding notes outside the range Bach gives that voice in the
  chorales (:data:`VOICE_RANGES`);
- in key: share of sounding steps whose pitch classes all belong to the piece's key
  (Krumhansl–Kessler key finding; minor keys admit the raised sixth and seventh);
- rhythmic density: attacks per beat, per voice;
- repetition: the longest stretch of one unchanged chord, in beats, and the share of pieces
  that collapse — some 4-bar stretch with at most two distinct chords, or one voice stuck
  on one pitch throughout.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bachd import encoding

SILENT = encoding.SILENT
VOICE_RANGES = encoding.VOICE_RANGES
COLLAPSE_STEPS = 16 * encoding.STEPS_PER_BEAT  # four 4/4 bars

_MAJOR_PROFILE = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
_MINOR_PROFILE = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)
MINOR_SCALE = (0, 2, 3, 5, 7, 8, 9, 10, 11)  # natural minor plus the raised 6th and 7th


@dataclass(frozen=True)
class Margin:
    """How far a model's figure may be from the corpus's: ``kind`` is 'abs' (in the
    figure's own units) or 'rel' (a fraction of the corpus figure); ``side`` says which
    direction is a failure: 'above', 'below' or 'both'."""

    amount: float
    kind: str = "abs"
    side: str = "both"

    def allows(self, model: float, corpus: float) -> bool:
        limit = self.amount * abs(corpus) if self.kind == "rel" else self.amount
        above, below = model - corpus, corpus - model
        if self.side == "above":
            return above <= limit
        if self.side == "below":
            return below <= limit
        return abs(model - corpus) <= limit

    def describe(self) -> str:
        amount = f"{self.amount:.0%}" if self.kind == "rel" else f"{self.amount:g}"
        return {"above": f"at most {amount} above", "below": f"at most {amount} below"}.get(self.side, f"within ±{amount}")


# The margins the shipped default model must meet (see the README's quality section).
MARGINS: dict[str, Margin] = {
    "voice_crossing_pct": Margin(2.0, side="above"),
    "parallels_per_100": Margin(0.5, side="above"),
    "antiparallels_per_100": Margin(0.5, side="above"),
    "out_of_range_pct": Margin(0.5, side="above"),
    "in_key_pct": Margin(5.0, side="below"),
    "density_soprano": Margin(0.25, "rel"),
    "density_alto": Margin(0.25, "rel"),
    "density_tenor": Margin(0.25, "rel"),
    "density_bass": Margin(0.25, "rel"),
    "longest_chord_beats": Margin(0.5, "rel", side="above"),
    "collapsed_pct": Margin(10.0, side="above"),
}

LABELS = {
    "voice_crossing_pct": "steps with voice crossing (%)",
    "parallels_per_100": "parallel 5ths/8ves per 100 steps",
    "antiparallels_per_100": "contrary 5ths/8ves per 100 steps",
    "out_of_range_pct": "notes out of the voice's range (%)",
    "in_key_pct": "steps in the detected key (%)",
    "density_soprano": "soprano attacks per beat",
    "density_alto": "alto attacks per beat",
    "density_tenor": "tenor attacks per beat",
    "density_bass": "bass attacks per beat",
    "longest_chord_beats": "longest unchanged chord (beats, mean)",
    "collapsed_pct": "pieces that collapse (%)",
}


def detect_key(pitches: np.ndarray) -> tuple[int, bool]:
    """(tonic pitch class, is_minor) of a (T, 4) pitch array by Krumhansl–Kessler profiles."""
    sounding = pitches[pitches != SILENT]
    histogram = np.bincount(sounding % 12, minlength=12).astype(np.float64)
    if histogram.sum() == 0:
        return 0, False
    best, best_key = -np.inf, (0, False)
    for minor, profile in ((False, _MAJOR_PROFILE), (True, _MINOR_PROFILE)):
        for tonic in range(12):
            score = np.corrcoef(histogram, np.roll(profile, tonic))[0, 1]
            if score > best:
                best, best_key = score, (tonic, minor)
    return best_key


def steps_in_key(pitches: np.ndarray, key: tuple[int, bool]) -> tuple[int, int]:
    """(sounding steps whose pitches all lie in ``key``'s scale, sounding steps) of a (T, 4)
    pitch array; ``key`` is (tonic pitch class, is_minor)."""
    tonic, minor = key
    scale = np.zeros(12, bool)
    scale[[(tonic + d) % 12 for d in (MINOR_SCALE if minor else MAJOR_SCALE)]] = True
    sounding = pitches != SILENT
    inside = np.where(sounding, scale[np.where(sounding, pitches, 0) % 12], True).all(axis=1)
    any_sounding = sounding.any(axis=1)
    return int((inside & any_sounding).sum()), int(any_sounding.sum())


def piece_counts(tokens: np.ndarray) -> dict[str, float]:
    """Raw counts for one (T, 4) token array; :func:`summarize` turns sums into figures."""
    pitches, attacks = encoding.decode_pitches(np.asarray(tokens))
    steps = pitches.shape[0]
    sounding = pitches != SILENT
    counts: dict[str, float] = {"steps": steps, "pieces": 1}

    crossed = np.zeros(steps, bool)
    for upper in range(3):
        both = sounding[:, upper] & sounding[:, upper + 1]
        crossed |= both & (pitches[:, upper] < pitches[:, upper + 1])
    counts["crossing_steps"] = int(crossed.sum())

    parallels = antiparallels = 0
    if steps > 1:
        now, nxt = pitches[:-1], pitches[1:]
        live = sounding[:-1] & sounding[1:]
        motion = np.sign(nxt - now)
        for i in range(4):
            for j in range(i + 1, 4):
                both = live[:, i] & live[:, j] & (motion[:, i] != 0) & (motion[:, j] != 0)
                before = np.abs(now[:, i] - now[:, j]) % 12
                after = np.abs(nxt[:, i] - nxt[:, j]) % 12
                perfect = ((before == 7) & (after == 7)) | ((before == 0) & (after == 0))
                parallels += int((both & perfect & (motion[:, i] == motion[:, j])).sum())
                antiparallels += int((both & perfect & (motion[:, i] != motion[:, j])).sum())
    counts["parallels"] = parallels
    counts["antiparallels"] = antiparallels  # in contrary motion: a fifth to a twelfth, an octave to a unison

    out = 0
    for voice, (low, high) in enumerate(VOICE_RANGES):
        p = pitches[sounding[:, voice], voice]
        out += int(((p < low) | (p > high)).sum())
    counts["sounding_notes"] = int(sounding.sum())
    counts["out_of_range"] = out

    counts["in_key_steps"], counts["sounding_steps"] = steps_in_key(pitches, detect_key(pitches))

    for voice, name in enumerate(encoding.VOICES):
        counts[f"attacks_{name}"] = int(attacks[:, voice].sum())

    counts["longest_chord_steps"] = _longest_run(pitches)
    counts["collapsed"] = int(collapses(pitches))
    return counts


def _longest_run(pitches: np.ndarray) -> int:
    """The longest run of identical rows (one chord held or repeated), in steps."""
    if pitches.shape[0] == 0:
        return 0
    change = np.any(pitches[1:] != pitches[:-1], axis=1)
    bounds = np.concatenate([[0], np.flatnonzero(change) + 1, [pitches.shape[0]]])
    return int(np.diff(bounds).max())


def collapses(pitches: np.ndarray, window: int = COLLAPSE_STEPS) -> bool:
    """True when some ``window``-step stretch has at most two distinct chords, or a voice
    sounding one pitch throughout it: the "stuck on one note" failure."""
    steps = pitches.shape[0]
    if steps < window:
        return False
    rows = np.unique(pitches, axis=0, return_inverse=True)[1].reshape(-1)
    for start in range(0, steps - window + 1, encoding.STEPS_PER_BEAT):
        part = pitches[start : start + window]
        if len(np.unique(rows[start : start + window])) <= 2:
            return True
        stuck = (part == part[0]) & (part != SILENT)
        if stuck.all(axis=0).any():
            return True
    return False


def summarize(counts: list[dict[str, float]]) -> dict[str, float]:
    """Figures over a set of pieces (each piece's counts from :func:`piece_counts`)."""
    if not counts:
        raise ValueError("no pieces to measure")
    total = {key: float(sum(c[key] for c in counts)) for key in counts[0]}
    steps = max(total["steps"], 1.0)
    beats = steps / encoding.STEPS_PER_BEAT
    figures = {
        "voice_crossing_pct": 100 * total["crossing_steps"] / steps,
        "parallels_per_100": 100 * total["parallels"] / steps,
        "antiparallels_per_100": 100 * total["antiparallels"] / steps,
        "out_of_range_pct": 100 * total["out_of_range"] / max(total["sounding_notes"], 1.0),
        "in_key_pct": 100 * total["in_key_steps"] / max(total["sounding_steps"], 1.0),
    }
    for name in encoding.VOICES:
        figures[f"density_{name}"] = total[f"attacks_{name}"] / beats
    figures["longest_chord_beats"] = total["longest_chord_steps"] / total["pieces"] / encoding.STEPS_PER_BEAT
    figures["collapsed_pct"] = 100 * total["collapsed"] / total["pieces"]
    figures = {key: round(value, 4) for key, value in figures.items()}
    figures["pieces"] = int(total["pieces"])
    figures["steps"] = int(total["steps"])
    return figures


def measure(pieces: list[np.ndarray]) -> dict[str, float]:
    """The musical figures of a list of (T, 4) token arrays."""
    return summarize([piece_counts(p) for p in pieces])


def compare(model: dict, corpus: dict, margins: dict[str, Margin] = MARGINS) -> list[dict]:
    """One row per figure: corpus value, model value, margin and whether it is met."""
    rows = []
    for key, margin in margins.items():
        rows.append({
            "figure": key, "label": LABELS[key], "corpus": corpus[key], "model": model[key],
            "margin": margin.describe(), "ok": margin.allows(model[key], corpus[key]),
        })
    return rows


def crops(pieces: list[np.ndarray], steps: int) -> list[np.ndarray]:
    """Each piece cut into consecutive ``steps``-long stretches (a shorter tail is kept when
    it is at least half as long), so real chorales are measured at the generated length."""
    out = []
    for tokens in pieces:
        for start in range(0, tokens.shape[0], steps):
            part = tokens[start : start + steps]
            if part.shape[0] >= steps // 2:
                out.append(part)
    return out
