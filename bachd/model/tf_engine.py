"""The streaming engine on TensorFlow: a ``tf.function`` traced once on the Keras model's own
layers (XLA optional), for GPUs and large batches. The interface and the numpy engine it is
tested against are in :mod:`bachd.model.engine`; only this engine imports TensorFlow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from bachd.errors import BachdError
from bachd.model.keras_model import config_of, keras, tf
from bachd.model.modelfile import ModelWeights
from bachd.model.streaming import StreamingEngine, lstm_row_cost


class TFEngine(StreamingEngine):
    backend = "tf"
    jit_compile = False

    @classmethod
    def load(cls, model: Any, batch_size: int = 1) -> TFEngine:
        if isinstance(model, (str, Path)):
            from bachd.model.keras_model import load_model

            model = load_model(model)
        elif isinstance(model, ModelWeights):
            raise BachdError(f"the {cls.backend} engine needs the Keras model or its file, not its weights")
        return cls(model, batch_size)

    def __init__(self, model: keras.Model, batch_size: int = 1):
        self.model = model
        self.config = config_of(model)
        self.check_architecture(self.config.architecture)
        self.batch_size = int(batch_size)
        self.row_cost = lstm_row_cost(self.config.lstm_units)
        layers = {layer.name: layer for layer in model.layers}
        self._token_embedding = layers["token_embedding"]
        self._voice_embedding = layers.get("voice_embedding")
        self._beat_embedding = layers.get("beat_embedding")
        self._key_embedding = layers.get("key_embedding")
        self._keys = tf.Variable(tf.zeros((self.batch_size,), tf.int32), trainable=False)
        self._cells = [layers[f"lstm_{i}"].cell for i in range(self.config.lstm_layers)]
        self._norms = [layers[f"norm_{i}"] for i in range(self.config.lstm_layers)]
        self._logits = layers["logits"]
        units = self.config.lstm_units
        self._h = [tf.Variable(tf.zeros((self.batch_size, units)), trainable=False) for _ in self._cells]
        self._c = [tf.Variable(tf.zeros((self.batch_size, units)), trainable=False) for _ in self._cells]
        self._cache: list = []
        self._attention = layers.get("attention")
        if self._attention is not None:  # as NumpyEngine: last ``window`` keys and values, newest last
            attention = self._attention
            self._norm_attention = layers["norm_attention"]
            cache = (self.batch_size, attention.heads, attention.window, attention.key_dim)
            self._cache = [
                tf.Variable(tf.zeros(cache), trainable=False), tf.Variable(tf.zeros(cache), trainable=False),
                tf.Variable(tf.zeros((self.batch_size,), tf.int32), trainable=False),
            ]
        spec = tf.TensorSpec((self.batch_size,), tf.int32)
        step = tf.function(self._step_graph, input_signature=[spec, spec, spec], jit_compile=self.jit_compile)
        self._step_fn = step.get_concrete_function()  # traced once; skips per-call dispatch
        self._voice_buf = np.zeros(self.batch_size, dtype=np.int32)
        self._beat_buf = np.zeros(self.batch_size, dtype=np.int32)

    def _step_graph(self, tokens, voices, beats):
        x = self._token_embedding(tokens)
        if self._voice_embedding is not None:
            x = x + self._voice_embedding(voices)
        if self._beat_embedding is not None:
            x = x + self._beat_embedding(beats)
        if self._key_embedding is not None:
            x = x + self._key_embedding(self._keys)
        for cell, norm, h, c in zip(self._cells, self._norms, self._h, self._c):
            out, (new_h, new_c) = cell(x, [h, c], training=False)
            h.assign(new_h)
            c.assign(new_c)
            x = norm(out)
        if self._attention is not None:
            x = self._norm_attention(x + self._attend(x))
        return self._logits(x)

    def _attend(self, x):
        layer, (keys, values, count) = self._attention, self._cache
        heads, window, batch = layer.heads, layer.window, self.batch_size

        def split(kernel):
            return tf.reshape(tf.matmul(x, kernel), (batch, heads, 1, -1))

        keys.assign(tf.concat([keys[:, :, 1:], split(layer.key)], axis=2))
        values.assign(tf.concat([values[:, :, 1:], split(layer.value)], axis=2))
        count.assign(tf.minimum(count + 1, window))
        scores = tf.matmul(split(layer.query), keys, transpose_b=True)[:, :, 0] / float(layer.key_dim) ** 0.5
        filled = tf.range(window)[None, :] >= window - count[:, None]  # (batch, window)
        scores = tf.where(filled[:, None], scores + tf.reverse(layer.distance_bias, [1])[None], -1e9)
        attended = tf.matmul(tf.nn.softmax(scores)[:, :, None], values)  # (batch, heads, 1, key_dim)
        return tf.matmul(tf.reshape(attended, (batch, -1)), layer.output_kernel) + layer.output_bias

    def step(self, tokens, voice: int, beat: int) -> np.ndarray:
        tokens = np.broadcast_to(np.asarray(tokens, dtype=np.int32), (self.batch_size,))
        self._voice_buf.fill(voice)
        self._beat_buf.fill(beat % self.config.positions)
        return self._step_fn(tf.constant(tokens), tf.constant(self._voice_buf), tf.constant(self._beat_buf)).numpy()

    def set_key(self, rows) -> None:
        self._keys.assign(np.broadcast_to(np.asarray(rows, dtype=np.int32), (self.batch_size,)))

    def reset(self) -> None:
        for variable in (*self._h, *self._c, *self._cache, self._keys):
            variable.assign(tf.zeros_like(variable))

    def get_state(self) -> list[np.ndarray]:
        return [v.numpy() for v in (*self._h, *self._c, *self._cache)]

    def set_state(self, state: list[np.ndarray]) -> None:
        for variable, value in zip((*self._h, *self._c, *self._cache), state):
            variable.assign(np.broadcast_to(value, variable.shape))

    def spawn(self, batch_size: int) -> TFEngine:
        """Another engine on the same Keras model (its own traced step and state)."""
        return type(self)(self.model, batch_size)


class XLAEngine(TFEngine):
    """The tf engine with its step compiled by XLA."""

    backend = "xla"
    jit_compile = True
