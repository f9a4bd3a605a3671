"""The streaming engine: the trained LSTM stepped one token at a time with explicit state.

Re-running the network over a window for every token is what the research scripts do;
here each token costs one cell step per layer, on the weights of the loaded Keras model.

Two interchangeable steppers share one interface:

- ``numpy`` (the default): the step written out in numpy on the weights read straight from
  the .keras file (:func:`bachd.model.modelfile.read_weights`), without importing TensorFlow. The first
  layer's input projection is linear in the three embeddings, so it
  is folded into lookup tables. On a small CPU a TensorFlow call costs more than the whole
  step (see benchmarks/engine.py), so this is what keeps a token well under a millisecond.
- ``tf`` (:mod:`bachd.model.tf_engine`): a ``tf.function`` traced once on the Keras model's own
  layers (XLA optional), for GPUs and large batches; the only engine that imports TensorFlow.
Both are tested against the full-sequence model's logits.
"""

from __future__ import annotations

import copy
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from bachd.errors import BachdError
from bachd.model.modelfile import ModelWeights, read_weights
from bachd.model.streaming import StreamingEngine, lstm_row_cost
from bachd.music import encoding
from bachd.registry import ENGINES


def make_engine(model: Any, batch_size: int = 1, backend: str = "auto") -> StreamingEngine:
    """An engine on ``model`` (a .keras path, or what the backend takes besides: the numpy
    engine, :class:`ModelWeights` or a Keras model; the tf engines, a Keras model), from
    :data:`bachd.registry.ENGINES`.

    ``auto`` is the numpy engine, unless TensorFlow is already loaded in this process (training,
    evaluation) and sees a GPU. Only ``tf`` and ``xla`` import TensorFlow."""
    if backend == "auto":
        backend = "tf" if _tf_sees_gpu() else "numpy"
    if backend not in ENGINES:
        raise BachdError(f"unknown engine backend {backend!r} (auto, {', '.join(ENGINES)})")
    engine: StreamingEngine = ENGINES[backend].load(model, batch_size)
    return engine


def _tf_sees_gpu() -> bool:
    tf = sys.modules.get("tensorflow")
    return tf is not None and bool(tf.config.list_physical_devices("GPU"))


class NumpyEngine(StreamingEngine):
    """The step in numpy, with the weights rearranged once so a step is a few calls:

    - layer 0's input projection becomes lookup tables (token, voice, beat, key);
    - each LayerNorm's gamma and beta are folded into the next layer's kernel and bias;
    - the i, f, o gate columns are pre-scaled by 1/2, so one tanh over all gates gives
      sigmoid(z) = (tanh(z/2) + 1) / 2 for i, f, o and tanh(z) for the cell input.
    """

    backend = "numpy"

    @classmethod
    def load(cls, model: Any, batch_size: int = 1) -> NumpyEngine:
        if isinstance(model, (str, Path)):
            model = read_weights(model)
        elif not isinstance(model, ModelWeights):
            from bachd.model.keras_model import weights_of

            model = weights_of(model)
        return cls(model, batch_size)

    def __init__(self, weights: ModelWeights, batch_size: int = 1):
        self.check_architecture(weights.config.architecture)
        self.config = config = weights.config
        self.batch_size = int(batch_size)
        self.row_cost = lstm_row_cost(config.lstm_units)

        def read(key: str) -> np.ndarray:
            return np.asarray(weights[key], np.float64)

        units = self._units = config.lstm_units
        gate_scale = np.full(4 * units, 0.5, np.float32)
        gate_scale[2 * units : 3 * units] = 1.0
        self._input_kernels: list[np.ndarray] = []  # kernel rows for x, then for h, stacked
        self._biases: list[np.ndarray] = []
        self._epsilons = [config.norm_epsilon] * config.lstm_layers
        gamma = beta = np.empty(0)  # the previous LayerNorm's, folded into the next kernel (from layer 1)
        for i in range(config.lstm_layers):
            kernel, recurrent, bias = (read(f"lstm_{i}/{name}") for name in ("kernel", "recurrent_kernel", "bias"))
            if i == 0:
                first_kernel, first_bias = kernel, bias
            else:
                bias = bias + beta @ kernel
                kernel = gamma[:, None] * kernel
            self._input_kernels.append((np.vstack([kernel, recurrent]) * gate_scale).astype(np.float32))
            self._biases.append((bias * gate_scale).astype(np.float32))
            gamma, beta = read(f"norm_{i}/gamma"), read(f"norm_{i}/beta")
        self._recurrent0 = self._input_kernels[0][first_kernel.shape[0] :]
        self._window = 0
        if config.attention_steps:
            gamma, beta = self._load_attention(weights, gamma, beta)

        def project(layer_name: str, rows: int = config.positions) -> np.ndarray:
            key = f"{layer_name}/embeddings"
            if key not in weights:
                return np.zeros((rows, 4 * units), np.float32)
            return (read(key) @ first_kernel * gate_scale).astype(np.float32)

        self._token_proj = ((read("token_embedding/embeddings") @ first_kernel + first_bias) * gate_scale).astype(
            np.float32
        )
        self._voice_proj = project("voice_embedding")
        self._beat_proj = project("beat_embedding")
        self._key_proj = project("key_embedding", encoding.KEY_ROWS) if config.use_key else None
        out_kernel = read("logits/kernel")
        self._out_kernel = (gamma[:, None] * out_kernel).astype(np.float32)
        self._out_bias = (read("logits/bias") + beta @ out_kernel).astype(np.float32)
        self._mean_vector = np.full((units, 1), 1.0 / units, np.float32)
        self._positions = config.positions
        self._side_proj = (self._voice_proj[:, None, :] + self._beat_proj[None, :, :]).astype(np.float32)
        self.reset()

    def step(self, tokens, voice: int, beat: int) -> np.ndarray:
        beat %= self._positions
        if self.batch_size == 1:
            return self._step_one(int(np.asarray(tokens).reshape(-1)[0]), voice, beat)[None, :]
        tokens = np.asarray(tokens, dtype=np.intp)
        z = self._token_proj[tokens] + (self._voice_proj[voice] + self._beat_proj[beat])
        if self._key_term is not None:
            z = z + self._key_term
        units = self._units
        normed = np.empty(0)  # the last layer's output, normalized
        for layer, kernel in enumerate(self._input_kernels):
            if layer == 0:
                z = z + self._h[0] @ self._recurrent0
            else:
                z = np.concatenate([normed, self._h[layer]], axis=1) @ kernel + self._biases[layer]
            t = np.tanh(z)
            c = (0.5 * t[:, units : 2 * units] + 0.5) * self._c[layer] + (0.5 * t[:, :units] + 0.5) * t[
                :, 2 * units : 3 * units
            ]
            h = (0.5 * t[:, 3 * units :] + 0.5) * np.tanh(c)
            self._h[layer] = h
            self._c[layer] = c
            centered = h - h @ self._mean_vector
            normed = centered / np.sqrt((centered * centered) @ self._mean_vector + self._epsilons[layer])
        if self._window:
            normed = self._attend(normed)
        return normed @ self._out_kernel + self._out_bias

    # --- causal attention over the last K steps -----------------------------------------------
    # The keys and values of the last ``window`` tokens are kept in a ring, (batch, heads,
    # window, key_dim); token n is written to slot n % window, so a step writes one slot and
    # never shifts the buffer. The distance bias is laid out per write slot in advance.

    def _load_attention(self, weights: ModelWeights, gamma, beta):
        """Read the attention layer, folding the last LSTM norm into its projections; return
        the attention norm's gamma and beta for the output layer to fold in."""
        config = self.config
        self._window = window = config.attention_steps * encoding.NUM_VOICES
        self._heads = heads = config.attention_heads
        self._key_dim = config.attention_key_dim
        self._inner = heads * config.attention_key_dim
        weight = {name: np.asarray(weights[f"attention/{name}"], np.float64) for name in (
            "query", "key", "value", "output_kernel", "output_bias", "distance_bias")}
        qkv = np.hstack([weight["query"] / math.sqrt(self._key_dim), weight["key"], weight["value"]])
        self._qkv_kernel = (gamma[:, None] * qkv).astype(np.float32)
        self._qkv_bias = (beta @ qkv).astype(np.float32)
        # The residual adds the last LSTM norm's output: scale, plus one shift that also
        # carries the attention's output bias.
        self._norm_scale = gamma.astype(np.float32)
        self._att_shift = (beta + weight["output_bias"]).astype(np.float32)
        self._att_out_kernel = weight["output_kernel"].astype(np.float32)
        # _ring_bias[full][slot]: (heads, window) bias of each slot when the newest token is in
        # ``slot``; before the ring has wrapped (full=0), slots after it are empty: -inf.
        distance = (np.arange(window)[:, None] - np.arange(window)[None, :]) % window  # [slot, j]
        full = np.transpose(weight["distance_bias"][:, distance], (1, 0, 2))  # (slot, heads, j)
        partial = np.where((np.arange(window)[None, :] > np.arange(window)[:, None])[:, None, :], -np.inf, full)
        self._ring_bias = (partial.astype(np.float32), full.astype(np.float32))
        self._att_epsilon = config.norm_epsilon
        return np.asarray(weights["norm_attention/gamma"], np.float64), np.asarray(
            weights["norm_attention/beta"], np.float64
        )

    def _attend(self, normed: np.ndarray) -> np.ndarray:
        """(batch, units) normalised LSTM output → normalised attention block output."""
        batch, inner, heads, window = normed.shape[0], self._inner, self._heads, self._window
        qkv = normed @ self._qkv_kernel + self._qkv_bias
        slot = self._count % window
        self._keys[:, :, slot] = qkv[:, inner : 2 * inner].reshape(batch, heads, -1)
        self._values[:, :, slot] = qkv[:, 2 * inner :].reshape(batch, heads, -1)
        self._count += 1
        query = qkv[:, :inner].reshape(batch, heads, -1, 1)
        scores = (self._keys @ query)[..., 0] + self._ring_bias[self._count >= window][slot]
        weights = np.exp(scores - scores.max(axis=-1, keepdims=True))
        weights /= weights.sum(axis=-1, keepdims=True)
        attended = (weights[:, :, None, :] @ self._values).reshape(batch, inner)
        x = normed * self._norm_scale + self._att_shift + attended @ self._att_out_kernel
        centered = x - x.mean(axis=-1, keepdims=True)
        return centered / np.sqrt((centered * centered).mean(axis=-1, keepdims=True) + self._att_epsilon)

    def _attend_one(self, normed: np.ndarray) -> np.ndarray:
        """``_attend`` for one stream on 1-D vectors (the live path)."""
        units, inner, window = self._units, self._inner, self._window
        qkv = normed @ self._qkv_kernel
        qkv += self._qkv_bias
        slot = self._count % window
        keys, values = self._keys[0], self._values[0]
        keys[:, slot] = qkv[inner : 2 * inner].reshape(self._heads, -1)
        values[:, slot] = qkv[2 * inner :].reshape(self._heads, -1)
        self._count += 1
        scores = (keys @ qkv[:inner].reshape(self._heads, -1, 1))[..., 0]
        scores += self._ring_bias[self._count >= window][slot]
        weights = np.exp(scores - scores.max(axis=1, keepdims=True))
        weights *= 1.0 / weights.sum(axis=1, keepdims=True)
        x = (weights[:, None, :] @ values).reshape(inner) @ self._att_out_kernel
        x += normed * self._norm_scale
        x += self._att_shift
        centered = x - float(x.sum()) * (1.0 / units)
        return centered * (1.0 / math.sqrt(float(centered @ centered) * (1.0 / units) + self._att_epsilon))

    def _step_one(self, token: int, voice: int, beat: int) -> np.ndarray:
        """The same step for one stream on 1-D vectors: the live path's case, where numpy's
        per-call overhead, not arithmetic, is most of the cost."""
        units = self._units
        scale = 1.0 / units
        z = self._token_proj[token] + self._side_proj[voice, beat]
        if self._key_term is not None:
            z += self._key_term[0]
        normed = np.empty(0)  # the last layer's output, normalized
        for layer, kernel in enumerate(self._input_kernels):
            h_prev = self._h[layer][0]
            if layer == 0:
                z += h_prev @ self._recurrent0
            else:
                z = np.concatenate((normed, h_prev)) @ kernel
                z += self._biases[layer]
            t = np.tanh(z)
            gates = t * 0.5
            gates += 0.5
            c = gates[units : 2 * units] * self._c[layer][0]
            c += gates[:units] * t[2 * units : 3 * units]
            h = gates[3 * units :] * np.tanh(c)
            self._h[layer] = h[None, :]
            self._c[layer] = c[None, :]
            centered = h - float(h.sum()) * scale
            normed = centered * (1.0 / math.sqrt(float(centered @ centered) * scale + self._epsilons[layer]))
        if self._window:
            normed = self._attend_one(normed)
        logits = normed @ self._out_kernel
        logits += self._out_bias
        return logits

    def spawn(self, batch_size: int) -> NumpyEngine:
        """Another engine on the same (shared, read-only) weights, with its own state."""
        twin = copy.copy(self)
        twin.batch_size = int(batch_size)
        twin.reset()
        return twin

    def set_key(self, rows) -> None:
        if self._key_proj is None:
            return
        rows = np.broadcast_to(np.asarray(rows, dtype=np.intp), (self.batch_size,))
        self._key_term = self._key_proj[rows]

    def reset(self) -> None:
        self._key_term = None if self._key_proj is None else np.repeat(self._key_proj[:1], self.batch_size, axis=0)
        shape = (self.batch_size, self._units)
        self._h = [np.zeros(shape, np.float32) for _ in self._input_kernels]
        self._c = [np.zeros(shape, np.float32) for _ in self._input_kernels]
        if self._window:
            cache = (self.batch_size, self._heads, self._window, self._key_dim)
            self._keys, self._values = np.zeros(cache, np.float32), np.zeros(cache, np.float32)
            self._count = 0  # tokens seen; streams step in lockstep, so one count serves the batch

    def get_state(self) -> list[np.ndarray]:
        state = [a.copy() for a in (*self._h, *self._c)]
        if self._window:
            state += [self._keys.copy(), self._values.copy(), np.full(self.batch_size, self._count)]
        return state

    def set_state(self, state: list[np.ndarray]) -> None:
        n = len(self._h)
        shape = (self.batch_size, self._units)
        self._h = [np.array(np.broadcast_to(s, shape), np.float32) for s in state[:n]]
        self._c = [np.array(np.broadcast_to(s, shape), np.float32) for s in state[n : 2 * n]]
        if self._window:
            keys, values, count = state[2 * n :]
            cache = (self.batch_size, *keys.shape[1:])
            self._keys = np.array(np.broadcast_to(keys, cache), np.float32)
            self._values = np.array(np.broadcast_to(values, cache), np.float32)
            self._count = int(np.asarray(count).reshape(-1)[0])
