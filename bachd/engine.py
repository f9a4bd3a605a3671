"""The streaming engine: the trained LSTM stepped one token at a time with explicit state.

Re-running the network over a window for every token is what the research scripts do;
here each token costs one cell step per layer, on the weights of the loaded Keras model.

Two interchangeable steppers share one interface:

- ``numpy`` (the default on CPU): the step written out in numpy on weights read from the
  model once. The first layer's input projection is linear in the three embeddings, so it
  is folded into lookup tables. On a small CPU a TensorFlow call costs more than the whole
  step (see benchmarks/engine.py), so this is what keeps a token well under a millisecond.
- ``tf``: a ``tf.function`` traced once on the model's own layers (XLA optional), for GPUs
  and large batches.
Both are tested against the full-sequence model's logits.
"""

from __future__ import annotations

import copy
import math

import numpy as np

from bachd.model import config_of, keras, tf


class StreamingEngine:
    """Common interface: ``step(tokens, voice, beat)`` feeds each stream's previous token with
    the voice and beat position of the token to come, and returns (batch, vocab) logits."""

    batch_size: int

    def step(self, tokens, voice: int, beat: int) -> np.ndarray:
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


def make_engine(model: "keras.Model", batch_size: int = 1, backend: str = "auto") -> StreamingEngine:
    if backend == "auto":
        backend = "tf" if tf.config.list_physical_devices("GPU") else "numpy"
    if backend == "numpy":
        return NumpyEngine(model, batch_size)
    if backend in ("tf", "xla"):
        return TFEngine(model, batch_size, jit_compile=backend == "xla")
    raise ValueError(f"unknown engine backend {backend!r} (auto, numpy, tf, xla)")


def _layers(model: "keras.Model") -> dict:
    return {layer.name: layer for layer in model.layers}


class NumpyEngine(StreamingEngine):
    """The step in numpy, with the weights rearranged once so a step is a few calls:

    - layer 0's input projection becomes three lookup tables (token, voice, beat);
    - each LayerNorm's gamma and beta are folded into the next layer's kernel and bias;
    - the i, f, o gate columns are pre-scaled by 1/2, so one tanh over all gates gives
      sigmoid(z) = (tanh(z/2) + 1) / 2 for i, f, o and tanh(z) for the cell input.
    """

    def __init__(self, model: "keras.Model", batch_size: int = 1):
        self.config = config_of(model)
        self.batch_size = int(batch_size)
        layers = _layers(model)
        units = self._units = self.config.lstm_units
        gate_scale = np.full(4 * units, 0.5, np.float32)
        gate_scale[2 * units : 3 * units] = 1.0
        self._input_kernels: list[np.ndarray] = []  # kernel rows for x, then for h, stacked
        self._biases: list[np.ndarray] = []
        self._epsilons: list[float] = []
        gamma = beta = None
        for i in range(self.config.lstm_layers):
            kernel, recurrent, bias = (w.numpy().astype(np.float64) for w in layers[f"lstm_{i}"].cell.weights)
            if i == 0:
                first_kernel, first_bias = kernel, bias
            else:
                bias = bias + beta @ kernel
                kernel = gamma[:, None] * kernel
            self._input_kernels.append((np.vstack([kernel, recurrent]) * gate_scale).astype(np.float32))
            self._biases.append((bias * gate_scale).astype(np.float32))
            norm = layers[f"norm_{i}"]
            gamma, beta = norm.gamma.numpy().astype(np.float64), norm.beta.numpy().astype(np.float64)
            self._epsilons.append(float(norm.epsilon))
        self._recurrent0 = self._input_kernels[0][first_kernel.shape[0] :]
        self._window = 0
        if "attention" in layers:
            gamma, beta = self._load_attention(layers["attention"], gamma, beta, layers["norm_attention"])

        def project(layer_name: str) -> np.ndarray:
            if layer_name not in layers:
                return np.zeros((4, 4 * units), np.float32)
            return (layers[layer_name].embeddings.numpy() @ first_kernel * gate_scale).astype(np.float32)

        self._token_proj = ((layers["token_embedding"].embeddings.numpy() @ first_kernel + first_bias) * gate_scale).astype(np.float32)
        self._voice_proj = project("voice_embedding")
        self._beat_proj = project("beat_embedding")
        dense = layers["logits"]
        out_kernel = dense.kernel.numpy().astype(np.float64)
        self._out_kernel = (gamma[:, None] * out_kernel).astype(np.float32)
        self._out_bias = (dense.bias.numpy() + beta @ out_kernel).astype(np.float32)
        self._mean_vector = np.full((units, 1), 1.0 / units, np.float32)
        self._side_proj = (self._voice_proj[:, None, :] + self._beat_proj[None, :, :]).astype(np.float32)
        self.reset()

    def step(self, tokens, voice: int, beat: int) -> np.ndarray:
        if self.batch_size == 1:
            return self._step_one(int(np.asarray(tokens).reshape(-1)[0]), voice, beat)[None, :]
        tokens = np.asarray(tokens, dtype=np.intp)
        z = self._token_proj[tokens] + (self._voice_proj[voice] + self._beat_proj[beat])
        units = self._units
        normed = None
        for layer, kernel in enumerate(self._input_kernels):
            if layer == 0:
                z = z + self._h[0] @ self._recurrent0
            else:
                z = np.concatenate([normed, self._h[layer]], axis=1) @ kernel + self._biases[layer]
            t = np.tanh(z)
            c = (0.5 * t[:, units : 2 * units] + 0.5) * self._c[layer] + (0.5 * t[:, :units] + 0.5) * t[:, 2 * units : 3 * units]
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

    def _load_attention(self, attention, gamma, beta, norm):
        """Read the attention layer, folding the last LSTM norm into its projections; return
        the attention norm's gamma and beta for the output layer to fold in."""
        self._window, self._heads = window, heads = attention.window, attention.heads
        self._key_dim = attention.key_dim
        self._inner = heads * attention.key_dim
        weight = {w.path.split("/")[-1]: w.numpy().astype(np.float64) for w in attention.weights}
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
        self._att_epsilon = float(norm.epsilon)
        return norm.gamma.numpy().astype(np.float64), norm.beta.numpy().astype(np.float64)

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
        normed = None
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

    def spawn(self, batch_size: int) -> "NumpyEngine":
        """Another engine on the same (shared, read-only) weights, with its own state."""
        twin = copy.copy(self)
        twin.batch_size = int(batch_size)
        twin.reset()
        return twin

    def reset(self) -> None:
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


class TFEngine(StreamingEngine):
    def __init__(self, model: "keras.Model", batch_size: int = 1, jit_compile: bool = False):
        self.config = config_of(model)
        self.batch_size = int(batch_size)
        layers = _layers(model)
        self._token_embedding = layers["token_embedding"]
        self._voice_embedding = layers.get("voice_embedding")
        self._beat_embedding = layers.get("beat_embedding")
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
        step = tf.function(self._step_graph, input_signature=[spec, spec, spec], jit_compile=jit_compile)
        self._step_fn = step.get_concrete_function()  # traced once; skips per-call dispatch
        self._voice_buf = np.zeros(self.batch_size, dtype=np.int32)
        self._beat_buf = np.zeros(self.batch_size, dtype=np.int32)

    def _step_graph(self, tokens, voices, beats):
        x = self._token_embedding(tokens)
        if self._voice_embedding is not None:
            x = x + self._voice_embedding(voices)
        if self._beat_embedding is not None:
            x = x + self._beat_embedding(beats)
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
        self._beat_buf.fill(beat)
        return self._step_fn(tf.constant(tokens), tf.constant(self._voice_buf), tf.constant(self._beat_buf)).numpy()

    def reset(self) -> None:
        for variable in (*self._h, *self._c, *self._cache):
            variable.assign(tf.zeros_like(variable))

    def get_state(self) -> list[np.ndarray]:
        return [v.numpy() for v in (*self._h, *self._c, *self._cache)]

    def set_state(self, state: list[np.ndarray]) -> None:
        for variable, value in zip((*self._h, *self._c, *self._cache), state):
            variable.assign(np.broadcast_to(value, variable.shape))
