"""Metrics of a model on whole pieces: pitch NLL (the benchmark figure), token NLL, accuracy.

Pitch NLL is in nats per token on the pitch-only sequence: p(pitch) = p(attack) + p(hold),
and REST stays REST, so a model is not judged on the held/re-struck distinction that
tie-less corpora cannot make.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from bachd.model.keras_model import config_of, input_names, keras, tf
from bachd.model.windows import piece_arrays, piece_key_row
from bachd.music import encoding
from bachd.music.corpus import Piece


def evaluate_pieces(model: keras.Model, pieces: list[Piece], batch_tokens: int = 16384, with_key: bool = False) -> dict:
    """Sums and means over every target token of ``pieces``, overall and per voice.

    A model with the key input is told "not known" unless ``with_key``: the key of the whole
    piece is found from all its notes, the ones still to come included, so the figures that
    compare with other models leave it out."""
    if not pieces:
        raise ValueError("no pieces to evaluate")
    class_matrix = tf.one_hot(encoding.pitch_class_table(), encoding.NUM_PITCH_CLASSES, dtype=tf.float32)
    totals = np.zeros((encoding.NUM_VOICES, 6))  # tokens, token nll, pitch nll, correct, attacks, attack pitch nll
    attack_table = np.zeros(encoding.VOCAB_SIZE, bool)
    attack_table[[encoding.attack(p) for p in range(encoding.PITCH_LOW, encoding.PITCH_HIGH + 1)]] = True
    order = sorted(pieces, key=lambda p: p.steps)
    positions = config_of(model).positions
    items = ((None, piece_arrays(p, positions, piece_key_row(p) if with_key else encoding.UNKNOWN_KEY)) for p in order)
    for _, stacked, logits in whole_piece_logits(model, items, batch_tokens):
        log_probs = tf.nn.log_softmax(logits, axis=-1)
        targets = tf.constant(stacked["targets"], tf.int32)
        token_nll = -tf.gather(log_probs, targets, batch_dims=2).numpy()
        class_probs = tf.einsum("btv,vc->btc", tf.exp(log_probs), class_matrix)
        target_class = tf.gather(tf.constant(encoding.pitch_class_table()), targets)
        pitch_nll = -np.log(np.maximum(tf.gather(class_probs, target_class, batch_dims=2).numpy(), 1e-12))
        correct = (tf.argmax(log_probs, axis=-1, output_type=tf.int32) == targets).numpy()
        weights = stacked["weights"]
        attacks = attack_table[stacked["targets"]]  # a new note: held notes are the easy part
        for voice in range(encoding.NUM_VOICES):
            w = weights * (stacked["voices"] == voice)
            totals[voice] += [w.sum(), (w * token_nll).sum(), (w * pitch_nll).sum(), (w * correct).sum(),
                              (w * attacks).sum(), (w * attacks * pitch_nll).sum()]
    return summarize(totals)


def whole_piece_logits(model: keras.Model, items: Iterable[tuple[Any, dict]], batch_tokens: int
                       ) -> Iterator[tuple[list[tuple[Any, dict]], dict, tf.Tensor]]:
    """Whole sequences through ``model`` in batches of at most ``batch_tokens`` tokens, each
    padded to its longest sequence: yields (the batch's ``(tag, arrays)`` items, their arrays
    stacked and zero-padded, float32 logits (batch, steps * voices, vocab)). Items are batched
    in the order given: sort them by length to waste little on padding."""
    names = input_names(config_of(model))
    batch: list[tuple[Any, dict]] = []

    def run() -> tuple[list[tuple[Any, dict]], dict, tf.Tensor]:
        length = max(len(a["tokens"]) for _, a in batch)
        stacked = {k: np.stack([np.pad(a[k], (0, length - len(a[k]))) for _, a in batch]) for k in batch[0][1]}
        logits = tf.cast(model({k: stacked[k] for k in names}, training=False), tf.float32)
        return list(batch), stacked, logits

    for item in items:
        if batch and (len(batch) + 1) * len(item[1]["tokens"]) > batch_tokens:
            yield run()
            batch.clear()
        batch.append(item)
    if batch:
        yield run()


def summarize(totals: np.ndarray) -> dict:
    def figures(row: np.ndarray) -> dict:
        tokens = max(row[0], 1.0)
        token_nll = row[1] / tokens
        return {
            "pitch_nll": round(float(row[2] / tokens), 5),
            "token_nll": round(float(token_nll), 5),
            "accuracy": round(float(row[3] / tokens), 5),
            "perplexity": round(float(math.exp(row[2] / tokens)), 5),
            "token_perplexity": round(float(math.exp(token_nll)), 5),
            "tokens": int(row[0]),
            "attack_pitch_nll": round(float(row[5] / max(row[4], 1.0)), 5),  # on the notes that start only
            "attack_tokens": int(row[4]),
        }

    result = figures(totals.sum(axis=0))
    result["per_voice"] = {name: figures(totals[i]) for i, name in enumerate(encoding.VOICES)}
    return result
