"""The Keras LSTM: token, voice, beat-position and key embeddings → stacked LSTM → (optional
causal attention over the last K steps) → logits.

The training model runs whole sequences. :mod:`bachd.model.engine` steps the same layers one
token at a time. Every hyperparameter lives in :class:`~bachd.model.modelfile.ModelConfig`: the model is built
from it, and it is saved inside the .keras file (``bachd.json``).
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from bachd.errors import BachdError
from bachd.model.modelfile import ModelConfig, ModelWeights, check_model_path, read_config, write_config
from bachd.model.tf_setup import import_tf
from bachd.music import encoding

tf = import_tf()
import keras  # noqa: E402  (after TensorFlow is quiet)


@keras.saving.register_keras_serializable(package="bachd")
class LocalAttention(keras.layers.Layer):
    """Causal multi-head self-attention over the last ``window`` tokens, with a learned bias
    per head for each distance back (0 = the token itself).

    A band, not the whole past, so a streamed token costs the same at bar 1 and bar 500:
    the engine keeps the last ``window`` keys and values and attends over them.
    """

    def __init__(self, window: int, heads: int, key_dim: int, **kwargs):
        super().__init__(**kwargs)
        self.window, self.heads, self.key_dim = int(window), int(heads), int(key_dim)

    def build(self, input_shape):
        width, inner = int(input_shape[-1]), self.heads * self.key_dim
        dense = keras.initializers.GlorotUniform()
        self.query = self.add_weight(name="query", shape=(width, inner), initializer=dense)
        self.key = self.add_weight(name="key", shape=(width, inner), initializer=dense)
        self.value = self.add_weight(name="value", shape=(width, inner), initializer=dense)
        self.output_kernel = self.add_weight(name="output_kernel", shape=(inner, width), initializer=dense)
        self.output_bias = self.add_weight(name="output_bias", shape=(width,), initializer="zeros")
        self.distance_bias = self.add_weight(name="distance_bias", shape=(self.heads, self.window), initializer="zeros")

    def _split(self, x, batch, length):
        x = keras.ops.reshape(x, (batch, length, self.heads, self.key_dim))
        return keras.ops.transpose(x, (0, 2, 1, 3))  # (batch, heads, length, key_dim)

    def call(self, x):
        ops = keras.ops
        batch, length = ops.shape(x)[0], ops.shape(x)[1]
        x32 = ops.cast(x, "float32")
        q = self._split(ops.matmul(x32, ops.cast(self.query, "float32")), batch, length)
        k = self._split(ops.matmul(x32, ops.cast(self.key, "float32")), batch, length)
        v = self._split(ops.matmul(x32, ops.cast(self.value, "float32")), batch, length)
        scores = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))) * (1.0 / float(self.key_dim) ** 0.5)
        positions = ops.arange(length)
        distance = positions[:, None] - positions[None, :]  # query minus key
        inside = ops.logical_and(distance >= 0, distance < self.window)
        bias = ops.take(ops.cast(self.distance_bias, "float32"), ops.clip(distance, 0, self.window - 1), axis=1)
        scores = ops.where(inside[None, None], scores + bias[None], -1e9)
        attended = ops.matmul(ops.softmax(scores, axis=-1), v)  # (batch, heads, length, key_dim)
        attended = ops.reshape(ops.transpose(attended, (0, 2, 1, 3)), (batch, length, self.heads * self.key_dim))
        out = ops.matmul(attended, ops.cast(self.output_kernel, "float32")) + ops.cast(self.output_bias, "float32")
        return ops.cast(out, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "window": self.window, "heads": self.heads, "key_dim": self.key_dim}


def build_model(config: ModelConfig) -> keras.Model:
    """The sequence model. Inputs: previous token, voice and position of the target (the
    16th within the bar, or within the beat for ``positions=4``) and, with ``use_key``, the
    piece's key (:func:`bachd.music.encoding.key_row`; 0 where it is not known)."""
    config.validate()
    tokens = keras.Input(shape=(None,), dtype="int32", name="tokens")
    voices = keras.Input(shape=(None,), dtype="int32", name="voices")
    beats = keras.Input(shape=(None,), dtype="int32", name="beats")
    x = keras.layers.Embedding(config.vocab_size, config.embed_dim, name="token_embedding")(tokens)
    if config.use_voice:
        x = x + keras.layers.Embedding(encoding.NUM_VOICES, config.embed_dim, name="voice_embedding")(voices)
    if config.use_beat:
        x = x + keras.layers.Embedding(config.positions, config.embed_dim, name="beat_embedding")(beats)
    inputs = {"tokens": tokens, "voices": voices, "beats": beats}
    if config.use_key:
        inputs["keys"] = keras.Input(shape=(None,), dtype="int32", name="keys")
        x = x + keras.layers.Embedding(encoding.KEY_ROWS, config.embed_dim, name="key_embedding")(inputs["keys"])
    for layer in range(config.lstm_layers):
        x = keras.layers.Dropout(config.dropout, name=f"dropout_{layer}")(x)
        # Defaults kept (tanh, sigmoid, no recurrent dropout, no unroll): the cuDNN kernel.
        x = keras.layers.LSTM(config.lstm_units, return_sequences=True, name=f"lstm_{layer}")(x)
        x = keras.layers.LayerNormalization(epsilon=config.norm_epsilon, name=f"norm_{layer}")(x)
    if config.attention_steps:
        window = config.attention_steps * encoding.NUM_VOICES
        attended = LocalAttention(window, config.attention_heads, config.attention_key_dim, name="attention")(x)
        attended = keras.layers.Dropout(config.dropout, name="dropout_attention")(attended)
        x = keras.layers.LayerNormalization(epsilon=config.norm_epsilon, name="norm_attention")(x + attended)
    x = keras.layers.Dropout(config.dropout, name="dropout_out")(x)
    logits = keras.layers.Dense(config.vocab_size, name="logits", dtype="float32")(x)
    model = keras.Model(inputs, logits, name="bachd_lstm")
    model.bachd_config = config
    return model


def save_model(model: keras.Model, path: str | Path) -> None:
    """Save the model with its ModelConfig inside, so it can be rebuilt without Keras."""
    model.save(str(path))
    write_config(path, config_of(model))


def load_model(path: str | Path, compile: bool = False) -> keras.Model:
    """Load a bachd model with Keras safe mode; a bad file is a one-line BachdError."""
    path = check_model_path(path)
    config = read_config(path)  # also rejects a .keras file that is not a bachd model
    try:
        model = keras.models.load_model(str(path), compile=compile, safe_mode=True)
    except (ValueError, OSError, KeyError, TypeError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BachdError(f"model {path} could not be loaded: {first[:200]}") from None
    model.bachd_config = config
    return model


def input_names(config: ModelConfig) -> tuple[str, ...]:
    """The model's inputs, as the arrays of :func:`bachd.model.windows.sequence_arrays` name them."""
    return ("tokens", "voices", "beats") + (("keys",) if config.use_key else ())


def config_of(model: keras.Model) -> ModelConfig:
    """The ModelConfig a model was built from (by :func:`build_model` or read by :func:`load_model`)."""
    return model.bachd_config


def weights_of(model: keras.Model) -> ModelWeights:
    """A built model's weights as the numpy engine takes them (as :func:`bachd.model.modelfile.read_weights`
    reads them from a file)."""
    layers = {layer.name: layer for layer in model.layers}
    arrays = {}
    config = config_of(model)
    for name in config.layer_names():
        for variable in layers[name].weights:
            arrays[f"{name}/{variable.path.split('/')[-1]}"] = np.asarray(variable.numpy())
    return ModelWeights(config, arrays)
