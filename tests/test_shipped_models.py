"""The models bachd ships: each loads, matches its card, and streams; each reproduces its
card's figure: the default on music21's validation chorales, the JSB benchmark model on the
JSB validation split (below Music Transformer's 0.335 nats) from the JSB data."""

import json
from pathlib import Path

import numpy as np
import pytest

from bachd.music import encoding as enc
from bachd.model.engine import make_engine
from bachd.model.keras_model import ModelConfig, config_of, input_names, load_model
from bachd.model.modelfile import card_path, read_config

from conftest import SHARED_DATA

MODELS = Path(__file__).resolve().parents[1] / "models"
JSB = SHARED_DATA / "jsb" / "Jsb16thSeparated.trainvalid.json"


@pytest.mark.parametrize("name", ["default", "default320", "jsb16", "jsb448ft", "jsb448kd"])
def test_a_shipped_model_matches_its_card_and_streams(name):
    path = MODELS / f"{name}.keras"
    card = json.loads(card_path(path).read_text())
    model = load_model(path)
    assert model.count_params() == card["parameters"]
    assert config_of(model) == read_config(path) == ModelConfig.from_dict(card["model"])
    assert card["representation"]["vocab_size"] == enc.VOCAB_SIZE
    assert card["command"].startswith("bachd train")
    engine = make_engine(path, batch_size=1, backend="numpy")
    logits = engine.step(enc.BOS, 0, 0)
    assert logits.shape == (1, enc.VOCAB_SIZE) and np.all(np.isfinite(logits))
    inputs = {"tokens": enc.BOS, "voices": 0, "beats": 0, "keys": enc.UNKNOWN_KEY}
    keras_logits = model({k: np.array([[inputs[k]]], np.int32) for k in input_names(config_of(model))})
    assert np.allclose(logits, keras_logits.numpy()[0], atol=1e-4)


def test_the_default_model_is_the_jsb_recipe_on_bachs_chorales_and_beats_the_model_before():
    """models/default.keras: 2x448, 32-step windows, the bar input, music21's chorales alone
    (no JS Fake Chorales, their own 277/41/53 split); lower pitch NLL than the model it
    replaced (models/default320.keras, 2x320 with 64-step windows) on the validation and test
    chorales, over every token and on the notes that start. The one before that had 0.422
    on the same validation chorales, 1.386 on the notes that start."""
    card = json.loads(card_path(MODELS / "default.keras").read_text())
    before = json.loads(card_path(MODELS / "default320.keras").read_text())
    config = read_config(MODELS / "default.keras")
    assert (config.lstm_layers, config.lstm_units, config.positions) == (2, 448, enc.STEPS_PER_BAR)
    assert card["training"]["window"]["window_steps"] == 32 and card["training"]["init_from"] is None
    assert [c["spec"] for c in card["corpora"]] == [c["spec"] for c in before["corpora"]] == ["bach"]
    assert card["corpora"][0]["pieces"] == before["corpora"][0]["pieces"] == {"train": 277, "valid": 41, "test": 53}
    assert card["metrics"]["valid"]["pitch_nll"] < 0.36 and card["metrics"]["valid"]["attack_pitch_nll"] < 1.15
    for split in ("valid", "test"):
        for figure in ("pitch_nll", "attack_pitch_nll"):
            assert card["metrics"][split][figure] < before["metrics"][split][figure] - 0.015, (split, figure)


def test_the_default_model_carries_its_calibration_fit_to_bachs_training_chorales():
    from bachd.model.calibration import REACH, read_calibration

    calibration = read_calibration(MODELS / "default.keras")
    assert calibration is not None and calibration.about["corpora"] == ["bach"]
    assert calibration.about["training_pieces"] == 277 and calibration.about["iterations"] == 8
    gaps = np.array(calibration.about["gaps"])  # (rounds + 1, lines and spacing)
    assert (gaps[-1] < gaps[0] / 2).all(), gaps
    # The soprano's 4ths and 5ths made likelier: the model alone leaps half as often as Bach.
    assert calibration.table[0, REACH + 5] > 0.3 and calibration.table[0, REACH - 5] > 0.3
    assert calibration.spacing[1:].any() and not calibration.spacing[0].any()
    for name in ("jsb16", "jsb448kd"):  # the benchmark models are sampled as trained
        assert read_calibration(MODELS / f"{name}.keras") is None


@pytest.mark.slow
def test_the_default_model_reproduces_its_figure_on_bachs_validation_chorales():
    from bachd.music.corpus import load_corpus
    from bachd.model.metrics import evaluate_pieces

    card = json.loads(card_path(MODELS / "default.keras").read_text())
    figures = evaluate_pieces(load_model(MODELS / "default.keras"), load_corpus("bach").split("valid"))
    assert figures["pitch_nll"] == pytest.approx(card["metrics"]["valid"]["pitch_nll"], abs=1e-3)


def _jsb_figures(card: dict) -> dict:
    """The card's figures on the JSB corpus alone (the model also trains on the JS Fake Chorales)."""
    (spec,) = [spec for spec in card["metrics_by_corpus"] if Path(spec).name == JSB.name]
    return card["metrics_by_corpus"][spec]


def _trained_on(card: dict) -> list[dict]:
    """The corpora a model's weights have seen: its own run's and, for a fine-tune, those of
    the model it started from, and for a distilled model those of its teachers, read from
    their cards."""
    corpora = list(card["corpora"])
    for model in [card["training"].get("init_from")] + card["training"].get("teachers", []):
        if model:
            corpora += _trained_on(json.loads(card_path(MODELS.parent / model).read_text()))
    return corpora


@pytest.mark.parametrize("name", ["jsb16", "jsb448ft", "jsb448kd"])
def test_the_jsb_models_never_trained_on_the_jsb_validation_or_test_chorales(name):
    card = json.loads(card_path(MODELS / f"{name}.keras").read_text())
    corpora = _trained_on(card)
    assert {Path(c["spec"]).name for c in corpora} == {"Jsb16thSeparated.trainvalid.json", "js-fakes-16thSeparated.npz"}
    for jsb in [c for c in corpora if Path(c["spec"]).name == JSB.name]:
        assert jsb["pieces"] == {"train": 229, "valid": 76, "test": 0}  # only the train split is trained on


def test_the_jsb_benchmark_model_is_the_fine_tune_of_the_2x448_run():
    """Trained on the JSB chorales and the JS Fake Chorales for 60 epochs, then fine-tuned on
    the JSB chorales alone; it streams within the live path's step budget at this width."""
    card = json.loads(card_path(MODELS / "jsb448ft.keras").read_text())
    base = json.loads(card_path(MODELS / "jsb448.keras").read_text())
    assert card["training"]["init_from"] == "models/jsb448.keras" and card["model"] == base["model"]
    assert card["model"]["lstm_units"] == 448 and card["model"]["lstm_layers"] == 2
    assert base["epochs_run"] == 60 and base["training"]["window"]["window_steps"] == 32
    assert card["metrics"]["valid"]["pitch_nll"] < _jsb_figures(base)["valid"]["pitch_nll"] < 0.34
    assert card["metrics"]["valid"]["pitch_nll"] < 0.335  # Music Transformer (Huang et al., 2019)
    assert card["metrics"]["valid"]["tokens"] == 73_632


def test_the_jsb_benchmark_model_is_jsb448ft_distilled_from_itself_and_jsb16():
    """jsb448ft's weights and shape, fine-tuned on the JSB chorales alone with 0.8 of the loss
    on the mixture of jsb448ft's and jsb16's predictions; below 0.33 on the JSB validation split."""
    card = json.loads(card_path(MODELS / "jsb448kd.keras").read_text())
    start = json.loads(card_path(MODELS / "jsb448ft.keras").read_text())
    assert card["training"]["init_from"] == "models/jsb448ft.keras" and card["model"] == start["model"]
    assert card["training"]["teachers"] == ["models/jsb448ft.keras", "models/jsb16.keras"]
    assert card["training"]["teacher_weights"] == [0.7, 0.3] and card["training"]["distill"] == 0.8
    assert [Path(c["spec"]).name for c in card["corpora"]] == [JSB.name]
    assert card["metrics"]["valid"]["pitch_nll"] <= 0.33 < start["metrics"]["valid"]["pitch_nll"]
    assert card["metrics"]["valid"]["tokens"] == 73_632


@pytest.mark.slow
@pytest.mark.skipif(not JSB.exists(), reason="needs ../shared/data (JSB chorales)")
@pytest.mark.parametrize("name", ["jsb448ft", "jsb448kd"])
def test_the_jsb_benchmark_models_reproduce_their_validation_figure(name):
    from bachd.music.corpus import load_corpus
    from bachd.model.metrics import evaluate_pieces

    card = json.loads(card_path(MODELS / f"{name}.keras").read_text())
    figures = evaluate_pieces(load_model(MODELS / f"{name}.keras"), load_corpus(str(JSB)).split("valid"))
    assert figures["pitch_nll"] == pytest.approx(card["metrics"]["valid"]["pitch_nll"], abs=1e-3)
    assert figures["attack_pitch_nll"] == pytest.approx(card["metrics"]["valid"]["attack_pitch_nll"], abs=1e-3)
    for voice, mine in figures["per_voice"].items():
        assert mine["pitch_nll"] == pytest.approx(card["metrics"]["valid"]["per_voice"][voice]["pitch_nll"], abs=1e-3)
    assert figures["pitch_nll"] < 0.335


@pytest.mark.slow
def test_the_default_harmonizes_bachs_melodies_within_the_margins_of_his_own_harmonizations():
    """``bachd eval --harmonize --check`` with the shipped default and the harmonizer preset,
    on the first twelve of music21's validation melodies (about 170 bars, rng seed 0; two minutes
    on two cores): complete triads on beats,
    dissonant strong beats, chord changes per beat, phrase ends as heard and their closes,
    each within its margin of Bach's harmonizations of the same melodies, and no parallels.
    A harmonizer that drifts out of a margin fails here; README's row is the whole split."""
    import subprocess
    import sys

    from conftest import cli_env

    result = subprocess.run(
        [sys.executable, "-m", "bachd", "eval", str(MODELS / "default.keras"), "--harmonize", "--split", "valid",
         "--pieces", "12", "--jobs", "2", "--check", "--json"],
        capture_output=True, text=True, env=cli_env(), timeout=600,
    )
    figures = json.loads(result.stdout)
    outside = [(row["figure"], row["bach"], row["bachd"]) for row in figures["rows"] if not row.get("ok", True)]
    assert result.returncode == 0 and figures["within_margins"], outside
    assert figures["melody_notes_harmonized"] == figures["melody_notes"]
