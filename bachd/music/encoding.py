"""The one place that knows how four-voice music becomes tokens and back.

Time is a 16th-note grid; a step holds four voices in S, A, T, B order and is serialized
as four tokens. Each pitch has two tokens, attack(p) and hold(p), so a held note is not a
repeated note. Training, evaluation, generation and the live path all go through here.
This module imports neither TensorFlow nor rtmidi.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

REPRESENTATION_VERSION = 1

VOICES = ("soprano", "alto", "tenor", "bass")
NUM_VOICES = 4
STEPS_PER_BEAT = 4  # a step is a 16th note; the beat is a quarter note
STEPS_PER_BAR = 16  # a 4/4 bar: the bar length assumed where the music does not say

PITCH_LOW = 24  # C1: wider than any chorale so transposition stays inside
PITCH_HIGH = 96  # C7
NUM_PITCHES = PITCH_HIGH - PITCH_LOW + 1

PAD = 0  # padding, never predicted
BOS = 1  # start of a piece, only ever an input
REST = 2
_FIRST_PITCH_TOKEN = 3
VOCAB_SIZE = _FIRST_PITCH_TOKEN + 2 * NUM_PITCHES

SILENT = -1  # pitch value for a silent voice in pitch arrays

# Which of S, A, T, B a source's n voices (highest first) become: a lone line is the
# soprano, two lines are the outer voices.
VOICE_SLOTS: dict[int, tuple[int, ...]] = {1: (0,), 2: (0, 3), 3: (0, 1, 3), 4: (0, 1, 2, 3)}

# The lowest and highest pitch of each voice in Bach's chorales (the JSB set); generation
# keeps each sampled voice inside, and ``bachd eval --music`` counts notes outside.
VOICE_RANGES: tuple[tuple[int, int], ...] = ((60, 81), (52, 74), (46, 69), (36, 66))


def attack(pitch: int) -> int:
    """Token that starts a note at MIDI ``pitch``."""
    _check_pitch(pitch)
    return _FIRST_PITCH_TOKEN + 2 * (pitch - PITCH_LOW)


def hold(pitch: int) -> int:
    """Token that continues a note at MIDI ``pitch``."""
    _check_pitch(pitch)
    return _FIRST_PITCH_TOKEN + 2 * (pitch - PITCH_LOW) + 1


def _check_pitch(pitch: int) -> None:
    if not PITCH_LOW <= pitch <= PITCH_HIGH:
        raise ValueError(f"pitch {pitch} is outside bachd's range {PITCH_LOW}-{PITCH_HIGH}")


def is_pitch_token(token: int) -> bool:
    return _FIRST_PITCH_TOKEN <= token < VOCAB_SIZE


def is_attack(token: int) -> bool:
    return is_pitch_token(token) and (token - _FIRST_PITCH_TOKEN) % 2 == 0


def is_hold(token: int) -> bool:
    return is_pitch_token(token) and (token - _FIRST_PITCH_TOKEN) % 2 == 1


def token_pitch(token: int) -> int:
    """MIDI pitch of a pitch token, or SILENT for REST/PAD/BOS."""
    if not is_pitch_token(token):
        return SILENT
    return PITCH_LOW + (token - _FIRST_PITCH_TOKEN) // 2


def token_pitches(tokens: np.ndarray) -> np.ndarray:
    """:func:`token_pitch` over an array of tokens."""
    tokens = np.asarray(tokens)
    sounding = (tokens >= _FIRST_PITCH_TOKEN) & (tokens < VOCAB_SIZE)
    return np.where(sounding, PITCH_LOW + (tokens - _FIRST_PITCH_TOKEN) // 2, SILENT)


def token_name(token: int) -> str:
    if token == PAD:
        return "PAD"
    if token == BOS:
        return "BOS"
    if token == REST:
        return "REST"
    kind = "attack" if is_attack(token) else "hold"
    return f"{kind}({token_pitch(token)})"


def pitch_class_table() -> np.ndarray:
    """For every token, the index of its pitch class for pitch-only NLL.

    Index 0 is REST, 1 + (p - PITCH_LOW) is pitch p; attack(p) and hold(p) share a class.
    PAD and BOS map to REST; they never occur as targets.
    """
    table = np.zeros(VOCAB_SIZE, dtype=np.int32)
    for token in range(_FIRST_PITCH_TOKEN, VOCAB_SIZE):
        table[token] = 1 + token_pitch(token) - PITCH_LOW
    return table


NUM_PITCH_CLASSES = 1 + NUM_PITCHES


def fold_pitch(pitch: int, low: int = PITCH_LOW, high: int = PITCH_HIGH) -> int:
    """Move ``pitch`` by octaves until it lies in [low, high] (high - low must span an octave)."""
    while pitch < low:
        pitch += 12
    while pitch > high:
        pitch -= 12
    return pitch


def encode_pitches(pitches: np.ndarray, attacks: np.ndarray | None = None) -> np.ndarray:
    """Turn a (T, 4) pitch array (SILENT for silence) into a (T, 4) token array.

    ``attacks`` is a (T, 4) bool array from sources that know where notes start (ties in
    MusicXML, note-ons in MIDI). Without it a note starts wherever the pitch changes or
    follows silence, which is all the JSB files can tell. An attack flag on a silent step
    is ignored; a missing attack where the pitch changes is forced.
    """
    pitches = np.asarray(pitches)
    if pitches.ndim != 2 or pitches.shape[1] != NUM_VOICES:
        raise ValueError(f"expected a (steps, 4) pitch array, got shape {pitches.shape}")
    pitches = np.where(np.isnan(pitches), SILENT, pitches) if pitches.dtype.kind == "f" else pitches
    pitches = pitches.astype(np.int64)
    sounding = pitches >= 0
    if np.any(sounding & ((pitches < PITCH_LOW) | (pitches > PITCH_HIGH))):
        bad = pitches[sounding & ((pitches < PITCH_LOW) | (pitches > PITCH_HIGH))][0]
        raise ValueError(f"pitch {bad} is outside bachd's range {PITCH_LOW}-{PITCH_HIGH}")
    previous = np.vstack([np.full((1, NUM_VOICES), SILENT), pitches[:-1]])
    starts = sounding & (previous != pitches)
    if attacks is not None:
        starts |= np.asarray(attacks, dtype=bool) & sounding
    offsets = _FIRST_PITCH_TOKEN + 2 * (pitches - PITCH_LOW) + np.where(starts, 0, 1)
    return np.where(sounding, offsets, REST).astype(np.int16)


def decode_pitches(tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`encode_pitches`: (pitches, attacks), each (T, 4).

    A hold that does not continue the same pitch (or follows a rest) counts as an attack.
    """
    tokens = np.asarray(tokens, dtype=np.int64)
    is_pitch = tokens >= _FIRST_PITCH_TOKEN
    pitches = np.where(is_pitch, PITCH_LOW + (tokens - _FIRST_PITCH_TOKEN) // 2, SILENT)
    attacks = is_pitch & ((tokens - _FIRST_PITCH_TOKEN) % 2 == 0)
    previous = np.vstack([np.full((1, tokens.shape[1]), SILENT), pitches[:-1]])
    attacks |= is_pitch & (previous != pitches)
    return pitches, attacks


def transpose_tokens(tokens: np.ndarray, semitones: int) -> np.ndarray | None:
    """Tokens moved by ``semitones``, or None if any pitch would leave the range."""
    tokens = np.asarray(tokens)
    is_pitch = tokens >= _FIRST_PITCH_TOKEN
    if semitones == 0:
        return tokens.copy()
    if np.any(is_pitch):
        pitches = PITCH_LOW + (tokens[is_pitch].astype(np.int64) - _FIRST_PITCH_TOKEN) // 2
        if int(np.min(pitches)) + semitones < PITCH_LOW or int(np.max(pitches)) + semitones > PITCH_HIGH:
            return None
    return np.where(is_pitch, tokens + 2 * semitones, tokens).astype(tokens.dtype)


@dataclass(frozen=True)
class Note:
    """A note of one voice on the step grid: [start_step, end_step)."""

    voice: int
    pitch: int
    start_step: int
    end_step: int


def tokens_to_notes(tokens: np.ndarray) -> list[Note]:
    """Notes of a (T, 4) token array, ordered by start step then voice."""
    pitches, attacks = decode_pitches(tokens)
    notes: list[Note] = []
    steps = pitches.shape[0]
    for voice in range(pitches.shape[1]):
        start = None
        for step in range(steps + 1):
            ends = step == steps or attacks[step, voice] or pitches[step, voice] == SILENT
            if start is not None and ends:
                notes.append(Note(voice, int(pitches[start, voice]), start, step))
                start = None
            if step < steps and attacks[step, voice]:
                start = step
    notes.sort(key=lambda n: (n.start_step, n.voice))
    return notes


def flatten_steps(tokens: np.ndarray) -> np.ndarray:
    """(T, 4) step tokens → (4T,) token stream in S, A, T, B order per step."""
    return np.asarray(tokens).reshape(-1)


def bar_period(steps_per_bar: int) -> int:
    """The bar a position input counts, for a bar of ``steps_per_bar`` 16ths: 4/4 and 2/2 are
    16, 3/4 is 12; a longer bar (6/4, 3/2) counts as two of its halves, and any other (2/4,
    5/4) as a 4/4 bar."""
    steps = int(steps_per_bar)
    while steps > STEPS_PER_BAR:
        steps //= 2
    return steps if steps in (12, STEPS_PER_BAR) else STEPS_PER_BAR


def strong_beat(beat: int, bar_steps: int) -> bool:
    """Whether 16th ``beat`` of a bar of ``bar_steps`` is a strong beat: 1 or 3 of a 4/4 bar
    (the middle of any bar of an even number of beats), the downbeat of any other."""
    half = bar_steps // 2
    return beat % half == 0 if half % STEPS_PER_BEAT == 0 else beat == 0


# The key input: row 0 is "not known"; a key is 1 + tonic pitch class + 12 if minor.
KEY_ROWS = 25
UNKNOWN_KEY = 0


def key_row(key) -> int:
    """The key input's row for a (tonic pitch class, is_minor) key, or for None (not known)."""
    if key is None:
        return UNKNOWN_KEY
    tonic, minor = key
    return 1 + int(tonic) % 12 + 12 * int(bool(minor))


def transposed_key_row(row: int, semitones: int) -> int:
    """The key input's row after moving the music by ``semitones``."""
    if row == UNKNOWN_KEY:
        return row
    tonic, minor = (row - 1) % 12, (row - 1) // 12
    return 1 + (tonic + semitones) % 12 + 12 * minor


def position_period(positions: int, bar_steps: int = STEPS_PER_BAR) -> int:
    """How a model with ``positions`` rows of position embedding counts steps: within the
    beat (4 rows, models before the bar input) or within the bar (16 rows; a 3/4 bar uses
    the first 12)."""
    return bar_steps if positions > STEPS_PER_BEAT else STEPS_PER_BEAT


def side_inputs(
    num_tokens: int, first_step: int = 0, phase: int = 0, period: int = STEPS_PER_BAR
) -> tuple[np.ndarray, np.ndarray]:
    """Voice index and position of each token of a flat stream.

    ``first_step`` is the step index of the stream's first token; ``phase`` is where step 0
    falls within its bar (0 when a piece starts on a downbeat, 12 after a one-beat pickup in
    4/4); positions count steps modulo ``period`` (see :func:`position_period`).
    """
    index = np.arange(num_tokens)
    voices = index % NUM_VOICES
    beats = (first_step + index // NUM_VOICES + phase) % period
    return voices.astype(np.int32), beats.astype(np.int32)
