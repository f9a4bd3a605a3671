"""Keys: naming them, Bach's own distribution of them, and the opening chord of a piece.

A model trained with transposition has heard every chorale in a dozen keys, so left to
itself a piece from nothing starts in any of them, and mostly in major: the first chord
decides, and a major triad is likelier than a minor one in almost every training window.
Bach wrote 44 % of his chorales in minor and almost none in keys of five or more sharps or
flats. So a piece from nothing opens on the tonic triad of a key drawn from Bach's own
distribution (:data:`BACH_KEYS`), or of the key the user names; the model voices that
chord and writes everything after it.
"""

from __future__ import annotations

import re

import numpy as np

from bachd.music import encoding
from bachd.music.analysis import MELODY_KEY_PROFILES, detect_key, key_of_histogram, scale_mask

Key = tuple[int, bool]  # (tonic pitch class, is_minor)

# How many of the 371 chorales of music21's Bach corpus are in each key, as
# bachd.music.analysis.detect_key finds it on the whole chorale (tests/test_keys.py recounts them).
BACH_KEYS: dict[Key, int] = {
    (0, False): 23, (0, True): 8, (1, True): 2, (2, False): 33, (2, True): 26, (3, False): 9,
    (4, False): 11, (4, True): 13, (5, False): 26, (5, True): 1, (6, True): 7, (7, False): 50,
    (7, True): 35, (8, False): 1, (9, False): 32, (9, True): 45, (10, False): 20, (10, True): 2,
    (11, False): 3, (11, True): 24,
}

_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
_LETTERS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
_KEY = re.compile(r"^\s*([A-Ga-g])\s*(#|b|sharp|flat|-sharp|-flat)?\s*(major|minor|maj|min|m)?\s*$", re.IGNORECASE)


def key_name(key: Key) -> str:
    tonic, minor = key
    name = _NAMES[tonic]
    if minor and tonic in (1, 6, 8):  # C#, F#, G# minor are spelled with sharps
        name = {1: "C#", 6: "F#", 8: "G#"}[tonic]
    elif not minor and tonic == 6:
        name = "F#"
    return f"{name} {'minor' if minor else 'major'}"


def parse_key(text: str) -> Key:
    """'D minor', 'Bb major', 'f#m', 'Eb' (major) → (tonic, is_minor); ValueError if not a key."""
    match = _KEY.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a key; write it like 'D minor', 'Bb major' or 'F#m'")
    letter, accidental, mode = match.groups()
    tonic = _LETTERS[letter.upper()]
    if accidental:
        tonic += 1 if "#" in accidental or "sharp" in accidental.lower() else -1
    minor = bool(mode) and mode.lower() in ("minor", "min", "m")
    return tonic % 12, minor


def draw_keys(rng: np.random.Generator, count: int) -> list[Key]:
    """``count`` keys drawn from Bach's distribution."""
    keys = list(BACH_KEYS)
    weights = np.array([BACH_KEYS[k] for k in keys], dtype=np.float64)
    picks = rng.choice(len(keys), size=count, p=weights / weights.sum())
    return [keys[int(i)] for i in picks]


def tonic_triad(key: Key) -> tuple[int, int, int]:
    tonic, minor = key
    return tonic, (tonic + (3 if minor else 4)) % 12, (tonic + 7) % 12


def opening_masks(keys: list[Key]) -> list[np.ndarray]:
    """Per voice, a (len(keys), vocab) mask of the first step's allowed tokens: a note of
    each key's tonic triad, the bass on the tonic itself."""
    vocab = encoding.VOCAB_SIZE
    masks = []
    for voice in range(encoding.NUM_VOICES):
        mask = np.zeros((len(keys), vocab), dtype=bool)
        for row, key in enumerate(keys):
            classes = (key[0],) if voice == encoding.NUM_VOICES - 1 else tonic_triad(key)
            for pitch in range(encoding.PITCH_LOW, encoding.PITCH_HIGH + 1):
                if pitch % 12 in classes:
                    mask[row, encoding.attack(pitch)] = True
        masks.append(mask)
    return masks


# Two pulls. ``key_pull`` holds back the notes outside the key's scale (in minor, the
# natural minor with the raised 6th and 7th: the scale bachd.music.analysis counts as in the key).
# ``minor_pull`` holds back the two notes that turn a minor key major: its flat 7th, the
# leading tone of its relative major, and its major 3rd, the third of its parallel major.
# Without the first the model drifts to the relative major and stays there: offline, before
# the model was told the key, 44 % of pieces opened in minor but only 25 % ended in it
# (Bach: 46 %); with the flat 7th pulled too, 37-38 %. Once the raised 6th and 7th are the
# scale's, a minor piece differs from its parallel major by the third alone: offline, a
# quarter of the pieces that opened in minor were heard in their tonic's major. Pulling the
# major 3rd too, with the alto and tenor freer (``inner_pull`` 0.15), 35.9 % of pieces are
# in minor over four seeds, against 30.9 % with the inner voices freer alone (0.4) and 31.9 %
# before either (README, "Musical checks"). A model told the key keeps its tonic by itself:
# offline, the scale pull then only makes the music plainer than Bach's (94 % of steps in
# the key against his 84 %), and the flat 7th alone keeps minor pieces in minor (46 % of
# pieces, against 31-33 % with no pull at all).
_FLAT_SEVENTH, _MAJOR_THIRD = 10, 4


def _pull_tables() -> tuple[np.ndarray, np.ndarray]:
    """(24, vocab) bool each, for each key (index tonic + 12 * is_minor): the attack tokens
    of pitches outside its scale, and of a minor key's flat 7th and major 3rd."""
    outside = np.zeros((24, encoding.VOCAB_SIZE), dtype=bool)
    turning = np.zeros((24, encoding.VOCAB_SIZE), dtype=bool)
    pitches = np.arange(encoding.PITCH_LOW, encoding.PITCH_HIGH + 1)
    attacks = np.array([encoding.attack(int(p)) for p in pitches])
    for minor in (False, True):
        for tonic in range(12):
            outside[tonic + 12 * minor, attacks[~scale_mask((tonic, minor))[pitches % 12]]] = True
    for tonic in range(12):
        turns = np.isin(pitches % 12, [(tonic + _FLAT_SEVENTH) % 12, (tonic + _MAJOR_THIRD) % 12])
        turning[tonic + 12, attacks[turns]] = True
    return outside, turning


_OUTSIDE, _TURNING = _pull_tables()


def scale_bias(keys: list[Key], pull: float, minor_pull: float = 0.0) -> np.ndarray:
    """(len(keys), vocab) logit offsets: ``-pull`` on the attacks of pitches outside each
    key's scale and ``-minor_pull`` on a minor key's flat 7th and major 3rd (the latter
    outside the scale too, so both pulls), 0 elsewhere. Holds are not touched: a note
    already sounding is the rhythm draw's business."""
    rows = [tonic + 12 * minor for tonic, minor in keys]
    return np.where(_OUTSIDE[rows], -float(pull), 0.0) + np.where(_TURNING[rows], -float(minor_pull), 0.0)


INNER_VOICES = (1, 2)  # alto and tenor


def voice_biases(keys: list[Key], config) -> np.ndarray | None:
    """(len(keys), 4, vocab) logit offsets of a sampling config's key pulls, per voice: the
    alto and tenor get ``inner_pull`` of ``key_pull`` (Bach's notes outside the key are
    mostly theirs: chromatic passing notes, the leading notes of passing keys). None when
    nothing pulls."""
    if not pulls_toward_key(config):
        return None
    outer = scale_bias(keys, config.key_pull, config.minor_pull)
    inner = (
        outer if config.inner_pull == 1 else scale_bias(keys, config.key_pull * config.inner_pull, config.minor_pull)
    )
    return np.stack([inner if voice in INNER_VOICES else outer for voice in range(encoding.NUM_VOICES)], axis=1)


def pulls_toward_key(config) -> bool:
    """Whether a sampling config's key pulls do anything."""
    return config.key_pull > 0 or config.minor_pull > 0


def key_of_tokens(tokens: np.ndarray, min_weight: float = 16.0) -> Key | None:
    """The key of a (T, 4) token array (:func:`bachd.music.analysis.detect_key`), or None when
    fewer than ``min_weight`` note-steps sound."""
    pitches, _ = encoding.decode_pitches(np.asarray(tokens))
    if (pitches != encoding.SILENT).sum() < min_weight:
        return None
    return detect_key(pitches)


class KeyTracker:
    """The key of what it has heard so far: key finding by Temperley's profiles
    (:data:`bachd.music.analysis.MELODY_KEY_PROFILES`, which name a melody's key better than the
    Krumhansl–Kessler ones :func:`bachd.music.analysis.detect_key` uses on four voices) on a
    pitch-class histogram of the notes it is given, step by step, that fades with a
    half-life of 24 4/4 bars, so that a modulation is followed. Live it is given the
    player's notes only (:class:`bachd.live.stream.Stream`), and the performer holds its voices
    to this key by the ``key_pull``, ``inner_pull`` and ``minor_pull`` settings."""

    # 24 bars of 4/4. From the melody alone, on Bach's 41 validation melodies (four seeds),
    # 384 steps kept 82-84 % of the harmonized steps in the key against 78-85 % for 128
    # (Krumhansl-Kessler); with Temperley's profiles 128 was no better (seeds 0 / 1).
    HALF_LIFE_STEPS = 384
    MIN_WEIGHT = 16.0  # sounding note-steps heard before a key is named

    def __init__(self) -> None:
        self._decay = 0.5 ** (1.0 / self.HALF_LIFE_STEPS)
        self.reset()

    def reset(self) -> None:
        self.histogram = np.zeros(12)
        self.key: Key | None = None

    def add(self, tokens) -> None:
        """One step's tokens (any voices)."""
        self.histogram *= self._decay
        for token in tokens:
            pitch = encoding.token_pitch(int(token))
            if pitch != encoding.SILENT:
                self.histogram[pitch % 12] += 1.0

    def detect(self) -> Key | None:
        """Name the key now (None until enough has sounded); returns it and keeps it in ``key``."""
        enough = self.histogram.sum() >= self.MIN_WEIGHT
        self.key = key_of_histogram(self.histogram, MELODY_KEY_PROFILES) if enough else None
        return self.key

    def state(self) -> tuple:
        return self.histogram.copy(), self.key

    def set_state(self, state: tuple) -> None:
        histogram, self.key = state
        self.histogram = histogram.copy()
