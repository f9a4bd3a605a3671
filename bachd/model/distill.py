"""Distillation: train a model on a teacher's distribution as well as on the notes.

A teacher is one or more trained bachd models, mixed (``p = sum w_i p_i``) token by token.
Each teacher reads every training piece whole from its start, in every transposition the
crops can take, as evaluation reads a piece (:func:`bachd.model.metrics.evaluate_pieces`), so
a crop's soft targets come from the teacher's full context, not from the crop alone. The
tables are computed once per run, before the first epoch, and held in memory as float16.

The loss is ``(1 - share) * NLL(notes) + share * cross-entropy(teacher's distribution)``
(:class:`bachd.model.training.SmoothedSparseCrossentropy`). A mixture of two different
networks predicts the chorales better than either; a student the size the live path affords
learns part of that gain.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from bachd.errors import BachdError
from bachd.model.keras_model import config_of, load_model, tf
from bachd.model.metrics import whole_piece_logits
from bachd.model.windows import piece_period, sequence_arrays
from bachd.music import encoding
from bachd.music.corpus import Piece

SoftTables = dict  # (piece index, semitones moved) -> (steps * voices, vocab) float16 probabilities


def mixture_weights(teachers: list[str], weights: list[float]) -> list[float]:
    """The teachers' mixture weights, normalised to sum to 1 (equal when none are given)."""
    if not teachers:
        if weights:
            raise BachdError("--teacher-weight needs --teacher")
        return []
    if not weights:
        weights = [1.0] * len(teachers)
    if len(weights) != len(teachers):
        raise BachdError(f"{len(weights)} --teacher-weight for {len(teachers)} --teacher: give one per teacher, or "
                         "none")
    if any(w <= 0 for w in weights):
        raise BachdError("--teacher-weight must be positive")
    total = float(sum(weights))
    return [w / total for w in weights]


def moves(piece: Piece, transpose: int) -> list[int]:
    """The transpositions (semitones) a crop of ``piece`` can take within ``transpose``."""
    return [s for s in range(-transpose, transpose + 1) if encoding.transpose_tokens(piece.tokens, s) is not None]


def soft_tables(teachers: list[str], weights: list[float], pieces: list[Piece], transpose: int,
                batch_tokens: int = 65536) -> SoftTables:
    """The teachers' mixed token distribution at every target token of every piece, in every
    transposition a crop can take (:func:`moves`)."""
    sequences = [(index, shift) for index, piece in enumerate(pieces) for shift in moves(piece, transpose)]
    sequences.sort(key=lambda item: pieces[item[0]].steps)
    tables: SoftTables = {}
    for path, weight in zip(teachers, mixture_weights(teachers, weights)):
        started = time.monotonic()
        model = load_model(path)
        if model.output_shape[-1] != encoding.VOCAB_SIZE:
            raise BachdError(f"teacher {path} has another vocabulary than bachd's")
        config = config_of(model)

        def arrays(index: int, shift: int, positions: int = config.positions) -> dict:
            piece = pieces[index]
            tokens = encoding.transpose_tokens(piece.tokens, shift)
            assert tokens is not None
            return sequence_arrays(tokens, 0, piece.phase, piece.steps, piece_period(piece, positions))

        items = ((key, arrays(*key)) for key in sequences)
        for batch, _, logits in whole_piece_logits(model, items, batch_tokens):
            probs = tf.nn.softmax(logits, axis=-1).numpy()
            for row, (key, inputs) in enumerate(batch):
                part = weight * probs[row, : len(inputs["tokens"])]
                tables[key] = part if key not in tables else tables[key] + part
        print(f"teacher {Path(path).name} (weight {weight:.3g}): {len(sequences)} pieces and transpositions "
              f"in {time.monotonic() - started:.0f} s", file=sys.stderr)
    return {key: table.astype(np.float16) for key, table in tables.items()}
