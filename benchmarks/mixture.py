"""Pitch NLL of two models mixed token by token, the figure that says whether distilling
their mixture (``bachd train --teacher A --teacher B``) has anything to teach.

    python benchmarks/mixture.py models/default.keras models/default320.keras \
        [--corpus bach] [--split valid] [--weights 0.5 0.6 0.7 0.8]

Each piece is read whole, as ``bachd eval`` reads it (a model with the key input is told
"not known"), and ``p = w p_A + (1 - w) p_B`` is scored on every target token, in nats per
token at the pitch level, as the published tables are. ``w = 1`` and ``w = 0`` are each model
alone, and match ``bachd eval``.
"""

from __future__ import annotations

import argparse

import numpy as np


def token_probabilities(path: str, pieces) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per piece: the model's (tokens, vocab) probabilities and the target tokens."""
    from bachd.model.keras_model import config_of, load_model, tf
    from bachd.model.metrics import whole_piece_logits
    from bachd.model.windows import piece_arrays
    from bachd.music import encoding

    model = load_model(path)
    positions = config_of(model).positions
    items = ((None, piece_arrays(p, positions, encoding.UNKNOWN_KEY)) for p in pieces)
    out = []
    for _, stacked, logits in whole_piece_logits(model, items, 16384):
        probs = tf.nn.softmax(logits, axis=-1).numpy()
        for row in range(probs.shape[0]):
            real = stacked["weights"][row] > 0
            out.append((probs[row][real], stacked["targets"][row][real]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs=2)
    parser.add_argument("--corpus", default="bach")
    parser.add_argument("--split", default="valid")
    parser.add_argument("--weights", nargs="+", type=float, default=[1.0, 0.0, 0.3, 0.5, 0.6, 0.7, 0.8])
    args = parser.parse_args()
    from bachd.music import encoding
    from bachd.music.corpus import load_corpus

    pieces = sorted(load_corpus(args.corpus).split(args.split), key=lambda p: p.steps)
    first, second = (token_probabilities(path, pieces) for path in args.models)
    classes = encoding.pitch_class_table()
    to_class = np.zeros((encoding.VOCAB_SIZE, classes.max() + 1))
    to_class[np.arange(encoding.VOCAB_SIZE), classes] = 1.0
    for weight in args.weights:
        total = tokens = 0.0
        for (a, targets), (b, _) in zip(first, second):
            class_probs = (weight * a + (1.0 - weight) * b) @ to_class
            total -= np.log(np.maximum(class_probs[np.arange(len(targets)), classes[targets]], 1e-12)).sum()
            tokens += len(targets)
        print(f"w = {weight:g}: pitch NLL {total / tokens:.4f} over {int(tokens):,} tokens of {len(pieces)} pieces")


if __name__ == "__main__":
    main()
