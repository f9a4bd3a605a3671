"""Roman numeral analysis of four voices on the 16th grid: the chord on each beat in the
piece's key (I, V6, ii6/5, V7/V, vii°7), and the cadence at each phrase end (PAC, IAC, HC,
PC, DC), as a harmony student writes them under the bass.

The chord's root, quality and inversion are music21's (:class:`music21.chord.Chord`, from
the pitches spelled in the key); the numeral, its case, its figures and the secondary
function are worked out here, so a dominant in a minor key reads V, not V75#3, and the
tonic in C never reads V/IV.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from bachd.music.analysis import heard_phrase_ends
from bachd.music.encoding import SILENT, STEPS_PER_BEAT

NUMERALS = ("I", "II", "III", "IV", "V", "VI", "VII")
LETTERS = "CDEFGAB"
MAJOR_STEPS = (0, 2, 4, 5, 7, 9, 11)
MINOR_STEPS = (0, 2, 3, 5, 7, 8, 10)  # natural minor; the raised 6th and 7th count as the key's too
TRIAD_FIGURES = ("", "6", "64")
SEVENTH_FIGURES = ("7", "65", "43", "42")


@dataclass(frozen=True)
class Chord:
    """One beat's chord in the key."""

    label: str  # "V6/V", "ii65", "viio7"
    degree: int  # 0-6 of the root, or of the function's own root for a secondary chord
    quality: str  # "major", "minor", "diminished", "augmented", "dominant7", "other"
    inversion: int
    secondary: bool
    pcs: frozenset
    bass: int  # pitch class


def _spelled(midis: list[int], names: list[tuple[str, int]]):
    from music21 import pitch

    out = []
    for midi in midis:
        letter, alter = names[midi % 12]
        octave = (midi - (0, 2, 4, 5, 7, 9, 11)[LETTERS.index(letter)] - alter) // 12 - 1
        out.append(pitch.Pitch(step=letter, accidental=alter or None, octave=octave))  # type: ignore[arg-type]
    return out


def chord_in_key(midis: list[int], key: tuple[int, bool], names: list[tuple[str, int]]) -> Optional[Chord]:
    """The chord of these pitches (bass first) in ``key``, or None for fewer than two pitch
    classes or a sonority with no root."""
    from music21 import chord as m21chord

    pcs = frozenset(m % 12 for m in midis)
    if len(pcs) < 2:
        return None
    sonority = m21chord.Chord(_spelled(sorted(midis), names))
    try:
        root = sonority.root()
        inversion = int(sonority.inversion()) if sonority.inversion() is not None else 0
    except Exception:  # noqa: BLE001 - music21 raises for sonorities with no tertian root
        return None
    tonic, minor = key
    tonic_letter = names[tonic][0]
    degree = (LETTERS.index(root.step) - LETTERS.index(tonic_letter)) % 7
    if sonority.isDominantSeventh():
        quality = "dominant7"
    elif sonority.isDiminishedSeventh():
        quality = "diminished7"
    elif sonority.isHalfDiminishedSeventh():
        quality = "halfdiminished7"
    elif sonority.isMajorTriad() or (len(pcs) == 2 and (root.pitchClass + 4) % 12 in pcs):
        quality = "major"
    elif sonority.isMinorTriad() or (len(pcs) == 2 and (root.pitchClass + 3) % 12 in pcs):
        quality = "minor"
    elif sonority.isDiminishedTriad():
        quality = "diminished"
    elif sonority.isAugmentedTriad():
        quality = "augmented"
    elif sonority.seventh is not None and (root.pitchClass + 4) % 12 in pcs:
        quality = "major7" if (root.pitchClass + 11) % 12 in pcs else "dominant7"
    elif sonority.seventh is not None:
        quality = "minor7"
    else:
        return None
    seventh = quality.endswith("7")
    figures = SEVENTH_FIGURES if seventh else TRIAD_FIGURES
    figure = figures[inversion] if inversion < len(figures) else ""
    steps = MINOR_STEPS if minor else MAJOR_STEPS
    in_key = {(tonic + s) % 12 for s in steps} | ({(tonic + 9) % 12, (tonic + 11) % 12} if minor else set())
    chromatic = not pcs <= in_key
    # A dominant (major triad, dominant seventh, or a diminished chord a semitone under its
    # goal) that brings a note from outside the key, to a goal other than the tonic: V/x, vii°/x.
    dominant = quality in ("major", "dominant7")
    leading = quality in ("diminished", "diminished7", "halfdiminished7")
    target = (degree - 4) % 7 if dominant else (degree + 1) % 7 if leading else None
    upper = (0, 3, 4) if not minor else (2, 4, 5, 6)  # the degrees whose triad in the key is major
    no_goal = (0, 6) if not minor else (0, 1)  # the tonic, and the diminished triad
    if chromatic and target is not None and target not in no_goal and not (minor and degree in (4, 6)):
        goal = NUMERALS[target] if target in upper else NUMERALS[target].lower()
        own = "V" if dominant else "vii" + ("ø" if quality == "halfdiminished7" else "o")
        return Chord(f"{own}{figure}/{goal}", target, quality, inversion, True, pcs, sorted(midis)[0] % 12)
    numeral = NUMERALS[degree]
    alteration = (root.pitchClass - (tonic + steps[degree])) % 12
    prefix = ""
    if alteration == 11 and not (minor and degree in (5, 6)):
        prefix = "b"
    elif alteration == 1 and not (minor and degree in (5, 6)):
        prefix = "#"
    if quality in ("minor", "minor7", "diminished", "diminished7", "halfdiminished7"):
        numeral = numeral.lower()
    suffix = {"diminished": "o", "diminished7": "o", "halfdiminished7": "ø", "augmented": "+"}.get(quality, "")
    return Chord(f"{prefix}{numeral}{suffix}{figure}", degree, quality, inversion, False, pcs, sorted(midis)[0] % 12)


def cadence(final: Chord, before: Optional[Chord], soprano_pc: int, tonic: int) -> Optional[str]:
    """PAC, IAC, HC, PC (plagal) or DC (deceptive) for a phrase ending on ``final``."""
    if final.secondary:
        return None
    if final.degree == 0 and final.quality in ("major", "minor") and before is not None and not before.secondary:
        if before.degree == 4 and before.quality in ("major", "dominant7"):
            perfect = before.inversion == 0 and final.inversion == 0 and soprano_pc == tonic
            return "PAC" if perfect else "IAC"
        if before.degree == 6 and before.quality.startswith(("diminished", "halfdiminished")):
            return "IAC"
        if before.degree == 3:
            return "PC"
    if final.degree == 4 and final.quality == "major":
        return "HC"
    if final.degree == 5 and before is not None and not before.secondary and before.degree == 4:
        return "DC"
    return None


def analyse(pitches: np.ndarray, attacks: np.ndarray, key: tuple[int, bool], names: list[tuple[str, int]],
            offset_steps: int = 0, bar_steps: int = 16) -> dict[int, tuple[str, Optional[str]]]:
    """Step → (the chord's label, the cadence or None) on each beat whose chord differs from
    the beat before, and at each phrase end."""
    labels: dict[int, tuple[str, Optional[str]]] = {}
    ends = set(heard_phrase_ends(pitches, attacks, phase=offset_steps, bar_steps=bar_steps))
    beats = [s for s in range(len(pitches)) if (s + offset_steps) % STEPS_PER_BEAT == 0]
    history: list[Chord] = []  # the chords as they changed
    printed: Optional[str] = None
    last_sonority: Optional[tuple] = None
    for step in sorted(set(beats) | ends):
        row = [int(p) for p in pitches[step] if p != SILENT]
        sonority = tuple(sorted(row))
        here = chord_in_key(row, key, names) if row else None
        if here is None:
            last_sonority = None
            continue
        if sonority == last_sonority and step not in ends:
            continue
        last_sonority = sonority
        same = bool(history) and here.pcs == history[-1].pcs
        before = (history[-2] if len(history) > 1 else None) if same else (history[-1] if history else None)
        closing = None
        if step in ends and pitches[step, 0] != SILENT:
            closing = cadence(here, before, int(pitches[step, 0]) % 12, key[0])
        if here.label != printed or closing:
            labels[step] = (here.label, closing)
            printed = here.label
        if not same:
            history.append(here)
    return labels
