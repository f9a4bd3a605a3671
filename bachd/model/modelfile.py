"""A bachd model file, read without TensorFlow.

A ``.keras`` file is a zip: ``config.json`` (the Keras model's configuration),
``model.weights.h5`` (the weights, HDF5) and, from bachd 0.2 on, ``bachd.json`` (the
:class:`ModelConfig` the model was built from). The numpy engine builds itself from this
module's :class:`ModelWeights`, so the live daemon and ``bachd generate`` start without
importing TensorFlow. A file saved by an earlier bachd has no ``bachd.json``: its
ModelConfig is read from the layer configurations in ``config.json`` instead.

The weights file names each layer by its class (``lstm``, ``lstm_1``, ...), in the order of
the model's layers, not by bachd's layer names; :func:`_weight_groups` maps one to the other
by walking ``config.json`` the way Keras walks the model when it saves.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from bachd.errors import BachdError, SetupError
from bachd.music import encoding

CONFIG_ENTRY = "bachd.json"

# The variables of each kind of layer, in the order Keras creates (and saves) them.
_VARIABLES = {
    "Embedding": ("embeddings",),
    "LSTM": ("kernel", "recurrent_kernel", "bias"),
    "LayerNormalization": ("gamma", "beta"),
    "Dense": ("kernel", "bias"),
    "LocalAttention": ("query", "key", "value", "output_kernel", "output_bias", "distance_bias"),
}


@dataclass(frozen=True)
class ModelConfig:
    architecture: str = "lstm"  # which streaming engines can step it (bachd.model.streaming)
    vocab_size: int = encoding.VOCAB_SIZE
    embed_dim: int = 128
    lstm_units: int = 384
    lstm_layers: int = 2
    dropout: float = 0.3
    use_voice: bool = True
    use_beat: bool = True
    positions: int = encoding.STEPS_PER_BAR  # position embedding rows: 16ths in the bar (4: in the beat)
    use_key: bool = False  # the piece's key as an input (encoding.key_row; row 0: not known)
    attention_steps: int = 0  # 0: none; else attend over the last K steps (4K tokens)
    attention_heads: int = 4
    attention_key_dim: int = 32  # per head; queries, keys and values are heads × key_dim wide
    norm_epsilon: float = 1e-3  # LayerNormalization's epsilon (Keras' default)

    def validate(self) -> ModelConfig:
        if self.lstm_layers < 1 or self.lstm_units < 1 or self.embed_dim < 1:
            raise BachdError("model size options must be positive")
        if self.attention_steps < 0:
            raise BachdError(f"attention steps must be 0 (off) or positive, got {self.attention_steps}")
        if self.attention_steps and (self.attention_heads < 1 or self.attention_key_dim < 1):
            raise BachdError("attention heads and key width must be positive")
        if self.positions not in (encoding.STEPS_PER_BEAT, encoding.STEPS_PER_BAR):
            raise BachdError(
                f"positions must be {encoding.STEPS_PER_BEAT} (the 16th in the beat) or "
                f"{encoding.STEPS_PER_BAR} (the 16th in the bar), got {self.positions}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise BachdError(f"dropout must be in [0, 1), got {self.dropout}")
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        data = {"positions": encoding.STEPS_PER_BEAT, **data}  # written before the bar input
        return cls(**{k: v for k, v in data.items() if k in known})

    def layer_names(self) -> list[str]:
        """The names of bachd's layers that hold weights."""
        names = ["token_embedding"]
        names += ["voice_embedding"] if self.use_voice else []
        names += ["beat_embedding"] if self.use_beat else []
        names += ["key_embedding"] if self.use_key else []
        for layer in range(self.lstm_layers):
            names += [f"lstm_{layer}", f"norm_{layer}"]
        names += ["attention", "norm_attention"] if self.attention_steps else []
        return names + ["logits"]


@dataclass
class ModelWeights:
    """A model's configuration and its weights as numpy arrays, keyed ``layer/variable``
    (``lstm_0/kernel``, ``norm_1/gamma``, ``attention/distance_bias``...)."""

    config: ModelConfig
    arrays: dict[str, np.ndarray]

    def __getitem__(self, key: str) -> np.ndarray:
        return self.arrays[key]

    def __contains__(self, key: str) -> bool:
        return key in self.arrays


def _not_bachd(path: Path, why: str) -> BachdError:
    return SetupError(f"{path} is not a readable bachd model ({why}); pass a model written by 'bachd train'")


def check_model_path(path: str | Path) -> Path:
    """The path, if it names an existing .keras file; else a one-line error."""
    path = Path(path)
    if not path.exists():
        raise SetupError(f"model {path} does not exist (train one with 'bachd train')")
    if path.is_dir():
        raise BachdError(f"model {path} is a directory; pass a .keras file")
    if path.suffix != ".keras":
        raise BachdError(f"model {path}: expected a .keras file")
    return path


def _open_zip(path: Path) -> zipfile.ZipFile:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as error:
        raise _not_bachd(path, f"not a .keras zip: {error}") from None
    missing = {"config.json", "model.weights.h5"} - set(archive.namelist())
    if missing:
        raise _not_bachd(path, f"no {', '.join(sorted(missing))} inside")
    return archive


def _keras_layers(path: Path, archive: zipfile.ZipFile) -> list[dict]:
    try:
        config = json.loads(archive.read("config.json"))
        layers = config["config"]["layers"]
        return [layer for layer in layers if isinstance(layer, dict) and "config" in layer]
    except (KeyError, TypeError, ValueError, zipfile.BadZipFile) as error:
        raise _not_bachd(path, f"unreadable config.json: {type(error).__name__}") from None


def read_config(path: str | Path) -> ModelConfig:
    """The ModelConfig a bachd model file was built from."""
    path = check_model_path(path)
    with _open_zip(path) as archive:
        return _config(path, archive, _keras_layers(path, archive))


def _config(path: Path, archive: zipfile.ZipFile, layers: list[dict]) -> ModelConfig:
    if CONFIG_ENTRY in archive.namelist():
        try:
            return ModelConfig.from_dict(json.loads(archive.read(CONFIG_ENTRY))["model"])
        except (KeyError, TypeError, ValueError) as error:
            raise _not_bachd(path, f"unreadable {CONFIG_ENTRY}: {type(error).__name__}") from None
    return _config_from_layers(path, layers)


def _config_from_layers(path: Path, layers: list[dict]) -> ModelConfig:
    """A file saved before ``bachd.json`` existed: read the configuration off its layers."""
    by_name = {layer["config"].get("name"): layer for layer in layers}
    if "token_embedding" not in by_name or "logits" not in by_name:
        raise _not_bachd(path, "it has no token_embedding and logits layers")
    lstms = [layer for layer in layers if layer.get("class_name") == "LSTM"]
    if not lstms:
        raise _not_bachd(path, "it has no LSTM layer")
    token = by_name["token_embedding"]["config"]
    attention = by_name.get("attention", {}).get("config")
    dropout = by_name.get("dropout_out", {}).get("config", {}).get("rate", 0.0)
    norm = by_name.get("norm_0", {}).get("config", {})
    return ModelConfig(
        vocab_size=int(token["input_dim"]),
        embed_dim=int(token["output_dim"]),
        lstm_units=int(lstms[0]["config"]["units"]),
        lstm_layers=len(lstms),
        dropout=float(dropout),
        use_voice="voice_embedding" in by_name,
        use_beat="beat_embedding" in by_name,
        use_key="key_embedding" in by_name,
        positions=int(by_name.get("beat_embedding", {}).get("config", {}).get("input_dim", encoding.STEPS_PER_BEAT)),
        attention_steps=int(attention["window"]) // encoding.NUM_VOICES if attention else 0,
        attention_heads=int(attention["heads"]) if attention else ModelConfig.attention_heads,
        attention_key_dim=int(attention["key_dim"]) if attention else ModelConfig.attention_key_dim,
        norm_epsilon=float(norm.get("epsilon", ModelConfig.norm_epsilon)),
    )


def _snake(name: str) -> str:
    # keras.src.utils.naming.to_snake_case: how Keras names a layer's group in the weights file
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def _weight_groups(layers: list[dict]) -> dict[str, tuple[str, str]]:
    """bachd layer name → (class name, group in model.weights.h5). Keras names each layer
    of a functional model by its class, numbered in layer order; operations that are not
    layers (the ``+`` of the embeddings) are not saved and take no number."""
    used: dict[str, int] = {}
    groups = {}
    for layer in layers:
        module = layer.get("module") or ""
        if module.startswith("keras.src.ops") or module.startswith("keras.ops"):
            continue
        class_name = layer.get("class_name", "")
        key = _snake(class_name)
        used[key] = used.get(key, -1) + 1
        groups[layer["config"].get("name")] = (class_name, key if used[key] == 0 else f"{key}_{used[key]}")
    return groups


def read_weights(path: str | Path) -> ModelWeights:
    """A bachd model file's configuration and weights, without TensorFlow or Keras."""
    import h5py  # noqa: PLC0415 - only the commands that load a model pay for it

    path = check_model_path(path)
    with _open_zip(path) as archive:
        layers = _keras_layers(path, archive)
        config = _config(path, archive, layers)
        groups = _weight_groups(layers)
        arrays: dict[str, np.ndarray] = {}
        try:
            with h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r") as weights:
                for name in config.layer_names():
                    if name not in groups:
                        raise _not_bachd(path, f"it has no {name} layer")
                    class_name, group = groups[name]
                    variables = weights["layers"][group]
                    if class_name == "LSTM":
                        variables = variables["cell"]
                    stored = variables["vars"]
                    for index, variable in enumerate(_VARIABLES.get(class_name, ())):
                        arrays[f"{name}/{variable}"] = np.asarray(stored[str(index)])
        except BachdError:
            raise
        except (KeyError, OSError, ValueError, zipfile.BadZipFile) as error:
            raise _not_bachd(path, f"unreadable weights: {type(error).__name__}: {error}") from None
    _check_shapes(path, config, arrays)
    return ModelWeights(config, arrays)


def _check_shapes(path: Path, config: ModelConfig, arrays: dict[str, np.ndarray]) -> None:
    units, vocab = config.lstm_units, config.vocab_size
    expected = {
        "token_embedding/embeddings": (vocab, config.embed_dim),
        "lstm_0/kernel": (config.embed_dim, 4 * units),
        "logits/bias": (vocab,),
    }
    for layer in range(config.lstm_layers):
        expected[f"lstm_{layer}/recurrent_kernel"] = (units, 4 * units)
    for key, shape in expected.items():
        if key not in arrays or tuple(arrays[key].shape) != shape:
            found = tuple(arrays[key].shape) if key in arrays else "nothing"
            raise _not_bachd(path, f"{key} is {found}, its configuration says {shape}")
    if vocab != encoding.VOCAB_SIZE:
        raise BachdError(
            f"{path} uses a {vocab}-token vocabulary, this bachd uses {encoding.VOCAB_SIZE}: "
            "retrain it with this version ('bachd train')"
        )


def write_config(path: str | Path, config: ModelConfig) -> None:
    """Add ``bachd.json`` (the ModelConfig and the representation it was trained on) to a
    saved .keras file."""
    entry = {"model": config.to_dict(), "representation_version": encoding.REPRESENTATION_VERSION}
    with zipfile.ZipFile(path, "a") as archive:
        if CONFIG_ENTRY not in archive.namelist():
            archive.writestr(CONFIG_ENTRY, json.dumps(entry, indent=2))


def card_path(model_path: str | Path) -> Path:
    model_path = Path(model_path)
    return model_path.with_name(model_path.stem + ".card.json")


def read_card(model_path: str | Path) -> dict:
    path = card_path(model_path)
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
