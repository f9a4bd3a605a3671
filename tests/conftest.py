import json
import os
from pathlib import Path

import numpy as np
import pytest

# The control surface and studio in this process (fixtures panel and studio), for every module.
pytest_plugins = ("webclient",)

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="module")
def jack():
    """A JACK server on the dummy driver for a module's end-to-end tests: skipped where jackd
    cannot start, failed with CI=true."""
    from jackprobe import JackServer, JackUnavailable

    try:
        with JackServer(period=64) as server:
            yield server
    except JackUnavailable as error:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI needs a JACK server for the end-to-end tests: {error}")
        pytest.skip(str(error))


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path_factory, monkeypatch):
    # Corpus caches go to a per-session folder; the music21 one is reused across tests.
    monkeypatch.setenv("BACHD_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))


def chorale_like(steps: int, offset: int = 0) -> list[list[int]]:
    """A small four-voice piece: half notes in S/A/T/B moving stepwise, with a rest."""
    soprano = [72, 74, 76, 74, 72, 71, 72, 74]
    rows = []
    for step in range(steps):
        beat = (step // 8) % len(soprano)
        s = soprano[beat] + offset
        rows.append([s, s - 5, s - 12, s - 24] if step % 32 != 31 else [-1, -1, -1, -1])
    return rows


@pytest.fixture
def tiny_json_corpus(tmp_path) -> Path:
    data = {
        "train": [chorale_like(96, k % 3) for k in range(6)],
        "valid": [chorale_like(64, 1), chorale_like(48, 2)],
        "test": [chorale_like(64, 2)],
    }
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(data))
    return path


def _tiny_model(directory: Path, **options) -> Path:
    import keras

    from bachd.model.keras_model import ModelConfig, build_model, save_model

    keras.utils.set_random_seed(0)  # the same tiny model in every run: failures reproduce
    model = build_model(ModelConfig(embed_dim=8, lstm_units=16, lstm_layers=2, dropout=0.0, **options))
    # Non-trivial LayerNorm parameters and distance biases, so the engine's folding of them
    # is really tested.
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if layer.name.startswith("norm_"):
            layer.gamma.assign(rng.uniform(0.5, 1.5, layer.gamma.shape))
            layer.beta.assign(rng.normal(0, 0.2, layer.beta.shape))
        if layer.name == "attention":
            layer.distance_bias.assign(rng.normal(0, 1.0, layer.distance_bias.shape))
            layer.output_bias.assign(rng.normal(0, 0.2, layer.output_bias.shape))
    path = directory / "tiny.keras"
    save_model(model, path)
    return path


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory) -> Path:
    """With the key input, so every path that tells the model the key is exercised."""
    return _tiny_model(tmp_path_factory.mktemp("models"), use_key=True)


@pytest.fixture(scope="session")
def tiny_attention_model_path(tmp_path_factory) -> Path:
    """Attention over the last 3 steps: a 12-token band, shorter than the tests' sequences."""
    return _tiny_model(tmp_path_factory.mktemp("attention"), attention_steps=3, attention_heads=2, attention_key_dim=5, use_key=True)


def cli_env() -> dict:
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return env
