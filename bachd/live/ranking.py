"""How the live harmonizer ranks the chords it draws ahead (:mod:`bachd.live.ahead`): on a
strong beat, by how well each closes a phrase (:class:`Closing`); on the beat before, by how
well it prepares a close (:class:`Preparing`). Pure logic on tokens.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from bachd.music import analysis, encoding

V = encoding.NUM_VOICES
Key = Optional[tuple[int, bool]]  # (tonic pitch class, minor); None: not named yet


class Closing:
    """How well a chord drawn for a strong beat closes in ``key`` (None: not named yet),
    after the chords on the beats before it (``beats``, the latest first): 0 unless every
    voice sounds a complete triad or seventh; 1 if it does, in any inversion; 2 if it is a
    major or minor triad in root position that ends a V-I or IV-I; 3 if that close is on the
    key's tonic. The chord it closes from is the last complete chord on a beat that is not
    the same chord, as a listener hears a cadence (:func:`bachd.music.analysis.heard_close`):
    the 16ths just before, a passing note, do not break it. The live harmonizer cannot know
    which melody note ends a phrase, so on every strong beat it prefers, among a few of the
    model's own draws, the one that could; and of two that close alike, the one whose notes
    all lie in the key's scale (:meth:`rank`). Root position counts only where it closes
    (preferring it everywhere put too many triads in root position for no more closes:
    docs/figures.md)."""

    def __init__(self, beats: tuple[np.ndarray, ...], key: Key) -> None:
        self.tonic = None if key is None else key[0]
        # The beat chords the draws may close from: (pitch classes, root in any inversion).
        self.before: list[tuple[frozenset, Optional[int]]] = []
        for tokens in beats:
            pitches = encoding.token_pitches(tokens)
            if not (pitches == encoding.SILENT).any():
                classes = analysis.pitch_classes(pitches)
                self.before.append((classes, analysis.chord_root(classes, analysis.CHORDS)))
        self.scale = None if key is None else analysis.scale_mask(key)

    def rank(self, tokens: np.ndarray) -> tuple[int, bool]:
        """(:meth:`score`, whether every note sounding lies in the key's scale): the draw
        that ranks highest is played."""
        pitches = encoding.token_pitches(tokens)
        return self._score(pitches), _in_scale(pitches, self.scale)

    def _score(self, pitches: np.ndarray) -> int:
        root = analysis.rooted(pitches, analysis.MAJOR_MINOR)
        if root is None:
            return int(analysis.complete(pitches))
        classes = analysis.pitch_classes(pitches)
        before = next((r for c, r in self.before if c != classes), None)
        if before is None or (before - root) % 12 not in (5, 7):
            return 1
        return 3 if root == self.tonic else 2


class Preparing:
    """How well a chord drawn for the beat before a strong beat prepares a close in ``key``
    (None: not named yet). A chorale's phrase mostly ends with its melody falling from the
    key's 2nd or rising from its 7th to the tonic, over V-I, or on the key's 5th or 4th over
    that V (a third of Bach's closes come from the 2nd, two thirds from one of the four, in
    the training chorales); the live harmonizer cannot know which such note ends a phrase,
    so under those four (:meth:`prepares`) it prefers, among a
    few of the model's own draws, a chord that can lead into a close: the key's dominant (a
    major triad or dominant seventh) in root position, then any complete chord in root
    position; of two alike, the one whose notes all lie in the key's scale (:meth:`rank`).
    Under any other melody note the model's one draw is played."""

    degrees = (2, 5, 7, 11)  # semitones over the tonic: the 2nd, 4th, 5th and the leading tone

    def __init__(self, key: Key) -> None:
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
        move within the dominant seventh chord); else None, as passing notes in those 16ths
        would take the chord before the close off its root."""
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


def arrival(tokens: np.ndarray) -> Optional[np.ndarray]:
    """The chord ``tokens`` struck under a melody note on a strong beat: the (voices, vocab)
    masks that keep its bass standing while the melody holds, for the beat; the alto and
    tenor stay free. Else None (no bass sounds).

    A phrase mostly ends on a strong beat, on a long melody note over a bass that stands,
    and a listener hears it end there. Bach's bass stands under 94 % of the melody notes of
    a half note or longer struck on a strong beat over a root-position triad, 80 % over any
    other chord (the training chorales). The live harmonizer cannot know how long the note
    will be, so its bass stands under every one: where Bach's walks on under a quarter note
    (35 % of them) it does not (docs/checks.md)."""
    bass = encoding.token_pitches(tokens)[V - 1]
    if bass == encoding.SILENT:
        return None
    masks = np.ones((V, encoding.VOCAB_SIZE), bool)
    masks[V - 1] = False
    masks[V - 1, encoding.hold(int(bass))] = True
    return masks


_DOMINANTS = [frozenset((0, 4, 7)), frozenset((0, 4, 7, 10))]  # a major triad or a dominant seventh
_TOKEN_PITCHES = encoding.token_pitches(np.arange(encoding.VOCAB_SIZE))  # token -> pitch; SILENT: no pitch


def _in_scale(pitches: np.ndarray, scale: Optional[np.ndarray]) -> bool:
    """Whether every sounding pitch lies in ``scale`` ((12,) bool; None: no key named yet)."""
    return scale is not None and bool(scale[pitches[pitches != encoding.SILENT] % 12].all())
