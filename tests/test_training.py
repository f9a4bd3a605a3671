"""Training end to end on a tiny corpus and a tiny model: artifact, card, curves, resume,
and MirroredStrategy over two logical CPU devices."""

import json
import subprocess
import sys
import textwrap

import pytest

from bachd.errors import BachdError
from bachd.model import ModelConfig, load_model
from bachd.modelfile import card_path
from bachd.training import TrainConfig, run_dir, train
from bachd.data import WindowConfig

from conftest import cli_env

TINY = ModelConfig(embed_dim=8, lstm_units=16, lstm_layers=1, dropout=0.1)


def _config(corpus, out, **kw):
    return TrainConfig(corpora=[str(corpus)], out=str(out), batch_size=4, window=WindowConfig(window_steps=16, passes=1.0), **kw)


def test_train_writes_model_card_and_curves_then_resumes(tiny_json_corpus, tmp_path):
    out = tmp_path / "tiny.keras"
    card = train(_config(tiny_json_corpus, out, epochs=2, label_smoothing=0.1), TINY, command="bachd train ...")
    assert out.exists() and (tmp_path / "tiny.curves.png").stat().st_size > 1000
    on_disk = json.loads(card_path(out).read_text())
    assert on_disk["model"]["lstm_units"] == 16 and on_disk["epochs_run"] == 2
    assert set(on_disk["metrics"]) == {"valid", "test"} and on_disk["metrics"]["test"]["tokens"] == 64 * 4
    assert on_disk["representation"]["vocab_size"] == 149 and on_disk["command"] == "bachd train ..."
    assert load_model(out).count_params() == on_disk["parameters"]
    log_lines = (run_dir(out) / "log.csv").read_text().strip().splitlines()
    assert len(log_lines) == 3  # header + two epochs
    assert "val_nll" in log_lines[0] and on_disk["training"]["label_smoothing"] == 0.1

    with pytest.raises(BachdError, match="--resume"):
        train(_config(tiny_json_corpus, out, epochs=3), TINY)
    resumed = train(_config(tiny_json_corpus, out, epochs=3, label_smoothing=0.1), TINY, resume=True)
    assert resumed["epochs_run"] == 3 and resumed["training"]["resumed"]
    assert len((run_dir(out) / "log.csv").read_text().strip().splitlines()) == 4  # one more epoch, appended


def test_resume_without_a_run_is_an_error(tiny_json_corpus, tmp_path):
    with pytest.raises(BachdError, match="nothing to resume"):
        train(_config(tiny_json_corpus, tmp_path / "m.keras"), TINY, resume=True)


def test_mirrored_strategy_over_two_logical_cpus(tiny_json_corpus, tmp_path):
    script = textwrap.dedent(f"""
        from bachd.tf_setup import import_tf
        tf = import_tf()
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from bachd.training import TrainConfig, make_strategy, train
        from bachd.data import WindowConfig
        from bachd.model import ModelConfig
        print("replicas", make_strategy("mirrored").num_replicas_in_sync)
        card = train(TrainConfig(corpora=[{str(tiny_json_corpus)!r}], out={str(tmp_path / 'm.keras')!r}, epochs=1, batch_size=2,
                                 window=WindowConfig(window_steps=16), distribute="mirrored"),
                     ModelConfig(embed_dim=8, lstm_units=16, lstm_layers=1))
        print("pitch_nll", card["metrics"]["valid"]["pitch_nll"])
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=cli_env(), timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "replicas 2" in result.stdout
    assert "2 device(s)" in result.stderr
    assert float(result.stdout.split("pitch_nll")[1]) > 0


def test_label_smoothing_loss_matches_its_definition():
    import numpy as np
    from bachd.training import SmoothedSparseCrossentropy

    rng = np.random.default_rng(3)
    logits = rng.normal(size=(2, 5, 7)).astype("float32")
    targets = rng.integers(0, 7, (2, 5))
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    nll = -np.take_along_axis(log_probs, targets[..., None], -1)[..., 0]
    plain = SmoothedSparseCrossentropy(0.0)(targets, logits)
    assert np.isclose(float(plain), nll.mean(), atol=1e-5)
    eps = 0.2
    smoothed = SmoothedSparseCrossentropy(eps)(targets, logits)
    assert np.isclose(float(smoothed), ((1 - eps) * nll - eps * log_probs.mean(-1)).mean(), atol=1e-5)
    confident = np.where(np.eye(7)[targets] > 0, 30.0, 0.0).astype("float32")
    assert float(SmoothedSparseCrossentropy(0.0)(targets, confident)) < 1e-6
    assert float(SmoothedSparseCrossentropy(eps)(targets, confident)) > 1.0  # certainty is penalized


def test_multiworker_is_refused_in_one_line_where_keras_cannot_run_it(monkeypatch):
    """Keras 3's fit() cannot run MultiWorkerMirroredStrategy: say so, before any work."""
    from bachd.errors import BachdError
    from bachd.training import make_strategy

    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["localhost:1", "localhost:2"]}, "task": {"type": "worker", "index": 0}}')
    with pytest.raises(BachdError, match="does not work with Keras 3"):
        make_strategy("multiworker")
