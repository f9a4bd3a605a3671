"""Training end to end on a tiny corpus and a tiny model: artifact, card, curves, resume,
and MirroredStrategy over two logical CPU devices."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from bachd.errors import BachdError
from bachd.model.keras_model import ModelConfig, load_model
from bachd.model.modelfile import card_path
from bachd.model.training import TrainConfig, run_dir, train
from bachd.model.windows import WindowConfig

from conftest import cli_env

TINY = ModelConfig(embed_dim=8, lstm_units=16, lstm_layers=1, dropout=0.1)


def _config(corpus, out, **kw):
    return TrainConfig(corpora=[str(corpus)], out=str(out), batch_size=4, window=WindowConfig(window_steps=16, passes=1.0), **kw)


def test_train_writes_model_card_and_curves_then_resumes(tiny_json_corpus, tmp_path):
    out = tmp_path / "tiny.keras"
    keyed = ModelConfig(embed_dim=8, lstm_units=16, lstm_layers=1, dropout=0.1, use_key=True)  # the key input flows through
    card = train(_config(tiny_json_corpus, out, epochs=2, label_smoothing=0.1), keyed, command="bachd train ...")
    assert out.exists() and (tmp_path / "tiny.curves.png").stat().st_size > 1000
    on_disk = json.loads(card_path(out).read_text())
    assert on_disk == json.loads(json.dumps(card))  # the card returned is the card written
    assert on_disk["model"]["lstm_units"] == 16 and on_disk["model"]["use_key"] and on_disk["epochs_run"] == 2
    assert set(on_disk["metrics"]) == {"valid", "test"} and on_disk["metrics"]["test"]["tokens"] == 64 * 4
    assert on_disk["representation"]["vocab_size"] == 149 and on_disk["command"] == "bachd train ..."
    assert load_model(out).count_params() == on_disk["parameters"]
    log_lines = (run_dir(out) / "log.csv").read_text().strip().splitlines()
    assert len(log_lines) == 3  # header + two epochs
    assert "val_nll" in log_lines[0] and on_disk["training"]["label_smoothing"] == 0.1

    with pytest.raises(BachdError, match="--resume"):
        train(_config(tiny_json_corpus, out, epochs=3), keyed)
    resumed = train(_config(tiny_json_corpus, out, epochs=3, label_smoothing=0.1), keyed, resume=True)
    assert resumed["epochs_run"] == 3 and resumed["training"]["resumed"]
    assert len((run_dir(out) / "log.csv").read_text().strip().splitlines()) == 4  # one more epoch, appended


def _logged(out, column: str) -> list[float]:
    """One column of a run's CSV log, epoch by epoch."""
    header, *rows = (run_dir(out) / "log.csv").read_text().strip().splitlines()
    index = header.split(",").index(column)
    return [float(row.split(",")[index]) for row in rows]


def test_a_fine_tune_starts_from_the_model_it_is_given(tiny_json_corpus, tmp_path):
    base = tmp_path / "base.keras"
    train(_config(tiny_json_corpus, base, epochs=2), TINY)
    out = tmp_path / "tuned.keras"
    asked = ModelConfig(embed_dim=12, lstm_units=24, lstm_layers=2)  # ignored: a fine-tune keeps the architecture
    card = train(_config(tiny_json_corpus, out, epochs=1, learning_rate=1e-6, init_from=str(base)), asked)
    assert card["model"]["lstm_units"] == 16 and card["model"]["lstm_layers"] == 1
    assert card["training"]["init_from"] == str(base)
    # A learning rate too small to move anything: the weights are still the starting model's
    # (a fresh initialisation would be far from them), and the epoch's logged validation NLL
    # is the starting figure the run measured before training.
    for start, tuned in zip(load_model(base).get_weights(), load_model(out).get_weights()):
        assert np.allclose(start, tuned, atol=1e-3)
    assert card["start_val_nll"] == pytest.approx(_logged(out, "val_nll")[0], abs=1e-3)


def test_a_fine_tune_that_only_gets_worse_hands_back_the_model_it_started_from(tiny_json_corpus, tmp_path):
    base = tmp_path / "base.keras"
    train(_config(tiny_json_corpus, base, epochs=2), TINY)
    out = tmp_path / "wrecked.keras"
    card = train(_config(tiny_json_corpus, out, epochs=2, learning_rate=1.0, weight_decay=0.0, init_from=str(base)), TINY)
    assert min(_logged(out, "val_nll")) > card["start_val_nll"]  # every epoch at this rate made validation worse...
    assert card["best_epoch"] == 0  # ...so the written model is the starting one, exactly
    for start, written in zip(load_model(base).get_weights(), load_model(out).get_weights()):
        assert np.array_equal(start, written)


def test_ema_validates_checkpoints_and_ships_the_average_and_resumes_exactly(tiny_json_corpus, tmp_path):
    from bachd.music.corpus import load_corpora
    from bachd.model.training import _pieces, _swap_average, make_datasets, make_strategy, validation_nll

    still = ModelConfig(embed_dim=8, lstm_units=16, lstm_layers=1, dropout=0.0)  # no dropout: runs repeat exactly
    whole = tmp_path / "whole.keras"
    train(_config(tiny_json_corpus, whole, epochs=3, ema=0.8, learning_rate=3e-2), still)
    # The same run stopped after its first epoch (a time budget), then resumed.
    parts = tmp_path / "parts.keras"
    train(_config(tiny_json_corpus, parts, epochs=3, ema=0.8, learning_rate=3e-2, max_minutes=1e-4), still)
    last = load_model(run_dir(parts) / "last.keras", compile=True)
    averaged = last.get_weights()
    best = load_model(run_dir(parts) / "best.keras")
    assert all(np.array_equal(a, b) for a, b in zip(averaged, best.get_weights()))  # the checkpoint is the average
    # ...which is what validation measured, and not what the optimizer was training.
    config = _config(tiny_json_corpus, parts)
    pieces = load_corpora(config.corpora)
    _, valid_ds, _ = make_datasets(config, _pieces(pieces, "train"), _pieces(pieces, "valid"), make_strategy("none"), 0, 16)
    assert validation_nll(best, valid_ds) == pytest.approx(_logged(parts, "val_nll")[0], abs=1e-4)
    _swap_average(last)
    assert max(np.abs(a - b).max() for a, b in zip(averaged, last.get_weights())) > 0.01
    assert abs(validation_nll(last, valid_ds) - _logged(parts, "val_nll")[0]) > 1e-3
    train(_config(tiny_json_corpus, parts, epochs=3, ema=0.8, learning_rate=3e-2), still, resume=True)
    assert _logged(parts, "val_nll") == pytest.approx(_logged(whole, "val_nll"), abs=1e-5)
    for a, b in zip(load_model(whole).get_weights(), load_model(parts).get_weights()):
        assert np.allclose(a, b, atol=1e-5)


def test_resume_without_a_run_is_an_error(tiny_json_corpus, tmp_path):
    with pytest.raises(BachdError, match="nothing to resume"):
        train(_config(tiny_json_corpus, tmp_path / "m.keras"), TINY, resume=True)


def test_mirrored_strategy_over_two_logical_cpus(tiny_json_corpus, tmp_path):
    script = textwrap.dedent(f"""
        from bachd.model.tf_setup import import_tf
        tf = import_tf()
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from bachd.model.training import TrainConfig, make_strategy, train
        from bachd.model.windows import WindowConfig
        from bachd.model.keras_model import ModelConfig
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
    from bachd.model.training import SmoothedSparseCrossentropy

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


def test_multiworker_needs_a_cluster_description(monkeypatch):
    from bachd.model.training import make_strategy

    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(BachdError, match="needs TF_CONFIG"):
        make_strategy("multiworker")
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(BachdError, match="not a cluster description"):
        make_strategy("multiworker")
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["localhost:1"]}, "task": {"type": "worker", "index": 3}}')
    with pytest.raises(BachdError, match="task index 3"):
        make_strategy("multiworker")


def _free_ports(count: int) -> list[int]:
    import socket

    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("localhost", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def test_two_worker_processes_train_one_model_like_a_single_worker(tiny_json_corpus, tmp_path):
    """Two local CPU processes under MultiWorkerMirroredStrategy, each with half the global
    batch: they end with identical weights, and the validation NLL matches one process
    training on the whole global batch."""
    import numpy as np

    from bachd.model.modelfile import read_weights

    common = ["-m", "bachd", "train", "--corpus", str(tiny_json_corpus), "--epochs", "3", "--embed-dim", "8",
              "--lstm-units", "16", "--lstm-layers", "1", "--dropout", "0", "--window-steps", "16", "--passes", "2",
              "--threads", "1", "--seed", "7", "--ema", "0.9"]  # with the averaged weights validated on each worker
    out = tmp_path / "multi.keras"
    workers = [f"localhost:{port}" for port in _free_ports(2)]
    processes = []
    for index in range(2):
        env = {**cli_env(), "TF_CONFIG": json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})}
        processes.append(subprocess.Popen([sys.executable, *common, "--batch-size", "4", "--distribute", "multiworker",
                                           "--out", str(out)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    try:
        results = [p.communicate(timeout=400) for p in processes]
    except subprocess.TimeoutExpired:
        # Never leave a worker behind, and say where each one stood.
        for p in processes:
            p.kill()
        tails = [p.communicate()[1][-1500:] for p in processes]
        pytest.fail("a worker did not finish in 400 s; worker stderr tails:\n" + "\n---\n".join(tails))
    for process, (_, err) in zip(processes, results):
        assert process.returncode == 0, err[-3000:]
    assert "2 device(s)" in results[0][1]
    single_out = tmp_path / "single.keras"
    single = subprocess.run([sys.executable, *common, "--batch-size", "8", "--out", str(single_out)],
                            capture_output=True, text=True, env=cli_env(), timeout=400)
    assert single.returncode == 0, single.stderr[-3000:]

    # One model: the second worker's copy has the chief's weights exactly.
    copy = run_dir(out) / "worker-1" / "multi.keras"
    chief_weights, copy_weights = read_weights(out).arrays, read_weights(copy).arrays
    assert chief_weights.keys() == copy_weights.keys()
    assert all(np.array_equal(chief_weights[k], copy_weights[k]) for k in chief_weights)
    multi_card, single_card = json.loads(card_path(out).read_text()), json.loads(card_path(single_out).read_text())
    assert multi_card["epochs_run"] == single_card["epochs_run"] == 3
    multi_nll, single_nll = multi_card["metrics"]["valid"]["pitch_nll"], single_card["metrics"]["valid"]["pitch_nll"]
    assert abs(multi_nll - single_nll) < 0.1 * single_nll, (multi_nll, single_nll)
    curve = [float(line.split(",")[-1]) for line in (run_dir(out) / "log.csv").read_text().splitlines()[1:]]
    assert len(curve) == 3 and curve[-1] < curve[0]  # the two workers learned together, epoch after epoch


def test_a_model_trained_on_two_corpora_reports_each_one_apart(tiny_json_corpus, tmp_path):
    other = tmp_path / "other.json"
    data = json.loads(tiny_json_corpus.read_text())
    data["valid"] = data["valid"][:1]
    other.write_text(json.dumps(data))
    config = TrainConfig(corpora=[str(tiny_json_corpus), str(other)], out=str(tmp_path / "two.keras"), epochs=1,
                         batch_size=4, window=WindowConfig(window_steps=16, passes=1.0))
    card = train(config, TINY)
    each = card["metrics_by_corpus"]
    assert set(each) == {str(tiny_json_corpus), str(other)}
    assert each[str(tiny_json_corpus)]["valid"]["tokens"] == (64 + 48) * 4 and each[str(other)]["valid"]["tokens"] == 64 * 4
    assert card["metrics"]["valid"]["tokens"] == sum(e["valid"]["tokens"] for e in each.values())
