"""Training examples from pieces: random crops, transposition, side inputs (numpy only).

Windows are random crops that start on a step boundary, drawn afresh every epoch, with a
random transposition per crop — not every stride-1 window of every piece.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bachd.music import encoding
from bachd.music.corpus import Piece


@dataclass(frozen=True)
class WindowConfig:
    window_steps: int = 128  # 512 tokens
    transpose: int = 6  # crops are moved by up to this many semitones either way
    passes: float = 1.0  # crops per epoch, as a multiple of (training steps / window_steps)
    key_dropout: float = 0.25  # share of crops whose key input says "not known"


def sequence_arrays(tokens: np.ndarray, first_step: int, phase: int, window_steps: int, period: int,
                    key_row: int = encoding.UNKNOWN_KEY) -> dict[str, np.ndarray]:
    """Inputs, targets and weights for one crop [first_step, first_step + window_steps).

    The input at each position is the previous token (BOS at a piece's start) with the voice
    and position of the target, counted modulo ``period`` (:func:`bachd.music.encoding.position_period`),
    and the piece's key (``key_row``, :func:`bachd.music.encoding.key_row`); a crop shorter than
    the window is padded with weight 0.
    """
    flat = encoding.flatten_steps(tokens).astype(np.int32)
    start = first_step * encoding.NUM_VOICES
    length = window_steps * encoding.NUM_VOICES
    target = flat[start : start + length]
    previous = flat[start - 1 : start + length - 1] if start else np.concatenate([[encoding.BOS], flat[: length - 1]])
    previous = previous[: len(target)]
    voices, beats = encoding.side_inputs(len(target), first_step, phase, period)
    pad = length - len(target)
    weights = np.ones(len(target), np.float32)
    if pad:
        target, previous, voices, beats = (np.pad(a, (0, pad)) for a in (target, previous, voices, beats))
        weights = np.pad(weights, (0, pad))
    keys = np.full(len(target), key_row, np.int32)
    return {"tokens": previous, "voices": voices, "beats": beats, "keys": keys, "targets": target, "weights": weights}


def piece_arrays(piece: Piece, positions: int, key_row: int = encoding.UNKNOWN_KEY) -> dict[str, np.ndarray]:
    """The whole piece as one sequence from its start (for evaluation by a model with
    ``positions`` rows of position embedding)."""
    return sequence_arrays(piece.tokens, 0, piece.phase, piece.steps, piece_period(piece, positions), key_row)


def piece_key_row(piece: Piece) -> int:
    """The key input's row for the key of the whole piece (:func:`bachd.music.analysis.detect_key`)."""
    from bachd.music.keys import key_of_tokens

    return encoding.key_row(key_of_tokens(piece.tokens, min_weight=1))


def piece_period(piece: Piece, positions: int) -> int:
    return encoding.position_period(positions, piece.bar_steps)


class CropSampler:
    """Draws random transposed crops from a list of pieces; deterministic for a seed."""

    def __init__(self, pieces: list[Piece], config: WindowConfig, seed: int, positions: int = encoding.STEPS_PER_BAR,
                 soft: dict | None = None):
        """``soft``: a teacher's distribution per (piece index, semitones moved) over the whole
        piece (:func:`bachd.model.distill.soft_tables`); each crop then carries its part."""
        if not pieces:
            raise ValueError("no training pieces")
        self.pieces = pieces
        self.config = config
        self.positions = positions
        self.rng = np.random.default_rng(seed)
        steps = np.array([p.steps for p in pieces], dtype=np.float64)
        self.weights = steps / steps.sum()  # a long piece is cropped more often
        self.crops_per_epoch = max(1, int(round(config.passes * steps.sum() / config.window_steps)))
        self.key_rows = [piece_key_row(p) for p in pieces]
        self.soft = soft

    def crop(self) -> dict[str, np.ndarray]:
        config = self.config
        index = int(self.rng.choice(len(self.pieces), p=self.weights))
        piece = self.pieces[index]
        last_start = max(0, piece.steps - config.window_steps)
        first_step = int(self.rng.integers(0, last_start + 1))
        tokens, moved_by = piece.tokens, 0
        for _ in range(4):
            shift = int(self.rng.integers(-config.transpose, config.transpose + 1)) if config.transpose else 0
            moved = encoding.transpose_tokens(tokens, shift)
            if moved is not None:
                tokens, moved_by = moved, shift
                break
        key = encoding.transposed_key_row(self.key_rows[index], moved_by)
        if self.rng.random() < config.key_dropout:
            key = encoding.UNKNOWN_KEY  # so the model also plays before it knows the key
        arrays = sequence_arrays(
            tokens, first_step, piece.phase, config.window_steps, piece_period(piece, self.positions), key
        )
        if self.soft is not None:
            start, length = first_step * encoding.NUM_VOICES, config.window_steps * encoding.NUM_VOICES
            part = self.soft[index, moved_by][start : start + length]
            arrays["soft"] = np.pad(part, ((0, length - len(part)), (0, 0)))
        return arrays

    def epoch(self):
        for _ in range(self.crops_per_epoch):
            yield self.crop()
