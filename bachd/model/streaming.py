"""The interface every streaming engine implements (:mod:`bachd.model.engine` for numpy,
:mod:`bachd.model.tf_engine` for TensorFlow), so that the performers and the file
commands never care which one runs."""

from __future__ import annotations

import numpy as np


class StreamingEngine:
    """Common interface: ``step(tokens, voice, beat)`` feeds each stream's previous token with
    the voice and position of the token to come (``beat``: the 16th within the bar; a model
    trained on positions within the beat takes it modulo 4), and returns (batch, vocab) logits.

    A model with the key input (``ModelConfig.use_key``) is told each stream's key by
    :meth:`set_key`, which holds until it is called again; ``reset`` makes it "not known".
    A model without one ignores it."""

    batch_size: int

    def step(self, tokens, voice: int, beat: int) -> np.ndarray:
        raise NotImplementedError

    def set_key(self, rows) -> None:
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
