"""Metrics of a model on whole pieces: pitch NLL (the benchmark figure), token NLL, accuracy.

Pitch NLL is in nats per token on the pitch-only sequence: p(pitch) = p(attack) + p(hold),
and REST stays REST, so a model is not judged on the held/re-struck distinction that
tie-less corpora cannot make.
"""

from __future__ import annotations

import math

import numpy as np

from bachd import encoding
from bachd.corpus import Piece
from bachd.data import piece_arrays
from bachd.model import keras, tf


def evaluate_pieces(model: "keras.Model", pieces: list[Piece], batch_tokens: int = 16384) -> dict:
    """Sums and means over every target token of ``pieces``, overall and per voice."""
    if not pieces:
        raise ValueError("no pieces to evaluate")
    class_matrix = tf.one_hot(encoding.pitch_class_table(), encoding.NUM_PITCH_CLASSES, dtype=tf.float32)
    totals = np.zeros((encoding.NUM_VOICES, 4))  # tokens, token nll, pitch nll, correct
    order = sorted(pieces, key=lambda p: p.steps)
    batch: list[dict] = []

    def flush() -> None:
        length = max(len(a["tokens"]) for a in batch)
        stacked = {
            key: np.stack([np.pad(a[key], (0, length - len(a[key]))) for a in batch])
            for key in ("tokens", "voices", "beats", "targets", "weights")
        }
        logits = model({k: stacked[k] for k in ("tokens", "voices", "beats")}, training=False)
        log_probs = tf.nn.log_softmax(tf.cast(logits, tf.float32), axis=-1)
        targets = tf.constant(stacked["targets"], tf.int32)
        token_nll = -tf.gather(log_probs, targets, batch_dims=2).numpy()
        class_probs = tf.einsum("btv,vc->btc", tf.exp(log_probs), class_matrix)
        target_class = tf.gather(tf.constant(encoding.pitch_class_table()), targets)
        pitch_nll = -np.log(np.maximum(tf.gather(class_probs, target_class, batch_dims=2).numpy(), 1e-12))
        correct = (tf.argmax(log_probs, axis=-1, output_type=tf.int32) == targets).numpy()
        weights = stacked["weights"]
        for voice in range(encoding.NUM_VOICES):
            w = weights * (stacked["voices"] == voice)
            totals[voice] += [w.sum(), (w * token_nll).sum(), (w * pitch_nll).sum(), (w * correct).sum()]
        batch.clear()

    for piece in order:
        arrays = piece_arrays(piece)
        if batch and (len(batch) + 1) * len(arrays["tokens"]) > batch_tokens:
            flush()
        batch.append(arrays)
    if batch:
        flush()
    return summarize(totals)


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
        }

    result = figures(totals.sum(axis=0))
    result["per_voice"] = {name: figures(totals[i]) for i, name in enumerate(encoding.VOICES)}
    return result


def generated_pieces(
    model: "keras.Model", pieces: int, steps: int, temperature: float, top_p: float, rng_seed: int | None,
    avoid_parallels: bool = True, rhythm_temperature: float = 1.0,
):
    """``pieces`` pieces of ``steps`` steps sampled from the model from nothing (one batch)."""
    from bachd.engine import make_engine
    from bachd.generation import generate
    from bachd.sampling import Sampler, SamplingConfig

    engine = make_engine(model, batch_size=pieces)
    config = SamplingConfig(
        temperature=temperature, top_p=top_p, avoid_parallels=avoid_parallels, rhythm_temperature=rhythm_temperature
    )
    sampler = Sampler(config, rng_seed=rng_seed)
    result = generate(engine, sampler, None, steps)
    return [result.tokens[k] for k in range(pieces)]


def music_report(samples: list[np.ndarray], reference: list[np.ndarray]) -> dict:
    """Musical figures of ``samples`` and of ``reference`` (real chorales, cut to the samples'
    length so that per-piece figures compare), with the margin check of each figure."""
    from bachd import music

    length = int(np.median([s.shape[0] for s in samples]))
    corpus = music.measure(music.crops(reference, length))
    model = music.measure(samples)
    rows = music.compare(model, corpus)
    return {"model": model, "corpus": corpus, "rows": rows, "within_margins": all(r["ok"] for r in rows)}
