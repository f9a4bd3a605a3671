"""The contract every streaming engine keeps (:mod:`bachd.model.engine` for numpy,
:mod:`bachd.model.tf_engine` for TensorFlow), so that the performers and the file commands
never care which one runs. Engines are found by backend name in :data:`bachd.registry.ENGINES`;
:func:`bachd.model.engine.make_engine` picks one.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from bachd.errors import BachdError

# The width of the LSTM that a batched step's cost is measured against (:attr:`StreamingEngine.row_cost`).
REFERENCE_UNITS = 320


class StreamingEngine:
    """``step(tokens, voice, beat)`` feeds each stream's previous token with the voice and
    position of the token to come (``beat``: the 16th within the bar; a model trained on
    positions within the beat takes it modulo 4), and returns (batch, vocab) logits.

    A model with the key input (``ModelConfig.use_key``) is told each stream's key by
    :meth:`set_key`, which holds until it is called again; ``reset`` makes it "not known".
    A model without one ignores it.

    ``architectures``: the model architectures (``ModelConfig.architecture``, written in the
    model file) this engine steps. ``row_cost``: what one row of a batched step costs, against
    a row of a 2x320 LSTM; the live harmonizer batches its chords ahead to fit a fixed budget."""

    backend: ClassVar[str] = "?"
    architectures: ClassVar[tuple[str, ...]] = ("lstm",)
    batch_size: int
    row_cost: float = 1.0

    @classmethod
    def load(cls, model: Any, batch_size: int = 1) -> StreamingEngine:
        """An engine on ``model``: a .keras path, or what this backend takes besides (the
        weights read from one, a loaded Keras model)."""
        raise NotImplementedError

    @classmethod
    def check_architecture(cls, architecture: str) -> None:
        if architecture not in cls.architectures:
            raise BachdError(f"the {cls.backend} engine steps {', '.join(cls.architectures)} models, "
                             f"not this {architecture} model")

    def spawn(self, batch_size: int) -> StreamingEngine:
        """Another engine on the same weights, with its own state, ``batch_size`` streams wide."""
        raise NotImplementedError

    def step(self, tokens: Any, voice: int, beat: int) -> np.ndarray:
        raise NotImplementedError

    def set_key(self, rows: Any) -> None:
        """The key input from now on: one :func:`bachd.music.encoding.key_row` per stream, or one for all."""
        raise NotImplementedError

    def reset(self) -> None:
        raise NotImplementedError

    def get_state(self) -> list[np.ndarray]:
        raise NotImplementedError

    def set_state(self, state: list[np.ndarray]) -> None:
        raise NotImplementedError

    def warm_up(self) -> None:
        """Run the step once (tracing it where needed) and leave the state as it was."""
        state = self.get_state()
        self.step(0, 0, 0)
        self.set_state(state)


def lstm_row_cost(units: int) -> float:
    """An LSTM step's work grows with the square of its width."""
    return (units / REFERENCE_UNITS) ** 2
