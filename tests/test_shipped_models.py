"""The models bachd ships: each loads, matches its card, and streams; each reproduces its
card's figure: the default on music21's validation chorales, the JSB benchmark model on the
JSB validation split (below 0.39 nats) from the JSB data."""

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


@pytest.mark.parametrize("name", ["default", "jsb16"])
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


def test_the_default_model_hears_the_bar_and_beats_its_predecessor_on_bachs_chorales():
    """Trained on music21's chorales alone (their own 80/10/10 split), with the bar input;
    the model it replaced had pitch NLL 0.422 on the same validation chorales, 1.386 on the
    notes that start."""
    card = json.loads(card_path(MODELS / "default.keras").read_text())
    assert read_config(MODELS / "default.keras").positions == enc.STEPS_PER_BAR
    assert [c["spec"] for c in card["corpora"]] == ["bach"]
    assert card["corpora"][0]["pieces"] == {"train": 277, "valid": 41, "test": 53}
    figures = card["metrics"]
    assert figures["valid"]["pitch_nll"] < 0.38 and figures["valid"]["attack_pitch_nll"] < 1.25
    assert figures["test"]["pitch_nll"] < 0.38


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


def test_the_jsb_model_never_trained_on_the_jsb_validation_or_test_chorales():
    card = json.loads(card_path(MODELS / "jsb16.keras").read_text())
    names = sorted(Path(c["spec"]).name for c in card["corpora"])
    assert names == ["Jsb16thSeparated.trainvalid.json", "js-fakes-16thSeparated.npz"]
    jsb = [c for c in card["corpora"] if Path(c["spec"]).name == JSB.name][0]
    assert jsb["pieces"] == {"train": 229, "valid": 76, "test": 0}  # only the train split is trained on
    assert card["training_seconds"] <= 2 * 3600
    assert _jsb_figures(card)["valid"]["pitch_nll"] < 0.39
    assert _jsb_figures(card)["valid"]["attack_pitch_nll"] < 1.4  # the notes that start, alone


@pytest.mark.slow
@pytest.mark.skipif(not JSB.exists(), reason="needs ../shared/data (JSB chorales)")
def test_the_jsb_model_reproduces_its_validation_figure():
    from bachd.music.corpus import load_corpus
    from bachd.model.metrics import evaluate_pieces

    card = json.loads(card_path(MODELS / "jsb16.keras").read_text())
    figures = evaluate_pieces(load_model(MODELS / "jsb16.keras"), load_corpus(str(JSB)).split("valid"))
    assert figures["pitch_nll"] == pytest.approx(_jsb_figures(card)["valid"]["pitch_nll"], abs=1e-3)
    assert figures["attack_pitch_nll"] == pytest.approx(_jsb_figures(card)["valid"]["attack_pitch_nll"], abs=1e-3)
    assert figures["pitch_nll"] < 0.39
