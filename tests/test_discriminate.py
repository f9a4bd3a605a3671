"""``bachd eval --music --discriminate``: can a classifier tell the pieces from Bach's?"""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from bachd.cli import app
from bachd.music import analysis, discriminate as d, encoding as enc

from conftest import SHARED_DATA

JSB = SHARED_DATA / "jsb" / "Jsb16thSeparated.trainvalid.json"


def test_the_logistic_regression_finds_the_side_a_figure_tells():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    y = (x[:, 1] + 0.3 * rng.normal(size=200) > 0).astype(float)
    weights = d.fit_logistic(x, y)
    assert abs(weights[2]) > 3 * max(abs(weights[1]), abs(weights[3]))
    verdict = d.cross_validate(x, y.astype(int), "toy")
    assert verdict.balanced_accuracy > 0.85 and verdict.interval[0] > 0.75
    noise = d.cross_validate(rng.normal(size=(200, 3)), y.astype(int), "noise")
    assert 0.35 < noise.balanced_accuracy < 0.65 and noise.interval[0] < 0.5 < noise.interval[1]


def _crops(corpus, split):
    pieces = corpus.split(split)
    crops, bars, _ = analysis.crops([p.tokens for p in pieces], 16 * 16, [(p.phase, p.bar_steps) for p in pieces])
    return crops, bars


@pytest.mark.skipif(not JSB.exists(), reason="../shared/data is not present")
def test_bach_against_bach_is_a_coin_toss_and_a_wrong_alto_is_told_at_once():
    from bachd.music.corpus import load_corpus

    corpus = load_corpus(str(JSB))
    train, train_bars = _crops(corpus, "train")
    valid, valid_bars = _crops(corpus, "valid")
    report = d.discriminate(valid, train, valid_bars, train_bars)
    assert report["pieces"] == {"bachd": len(valid), "bach": len(train)}
    for verdict in report["classifiers"]:  # the JSB validation chorales against its training ones
        low, high = verdict["interval_pct"]
        assert 42 < verdict["balanced_accuracy_pct"] < 58 and low < 50 < high, verdict

    def wrong_alto(tokens):
        """Every alto note a semitone higher: out of the key, the chords no longer triads."""
        pitches, attacks = enc.decode_pitches(tokens)
        pitches = pitches.copy()
        pitches[pitches[:, 1] != enc.SILENT, 1] += 1
        return enc.encode_pitches(pitches, attacks)

    report = d.discriminate([wrong_alto(t) for t in valid], train, valid_bars, train_bars)
    assert all(v["balanced_accuracy_pct"] > 95 for v in report["classifiers"]), report["classifiers"]
    telling = {row["figure"]: row for row in report["telling_figures"]}
    assert "triads_on_beats" in telling and telling["triads_on_beats"]["bachd"] < telling["triads_on_beats"]["bach"]


def test_eval_discriminates_generated_pieces_from_the_splits_chorales(tiny_model_path, tiny_json_corpus):
    runner = CliRunner()
    result = runner.invoke(app, ["eval", str(tiny_model_path), "--corpus", str(tiny_json_corpus), "--split", "train",
                                 "--music", "--pieces", "6", "--bars", "4", "--discriminate", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)["discriminator"]
    assert report["pieces"]["bachd"] == 6 and report["pieces"]["bach"] >= 5
    assert [v["classifier"].split(" on ")[1] for v in report["classifiers"]] == [
        "the figures", "the piano roll's interval histograms"]
    assert all(0 <= v["balanced_accuracy_pct"] <= 100 for v in report["classifiers"])
    assert all(row["label"] == d.FIGURE_LABELS[row["figure"]] for row in report["telling_figures"])
    result = runner.invoke(app, ["eval", str(tiny_model_path), "--corpus", str(tiny_json_corpus), "--discriminate"])
    assert result.exit_code == 1 and "--discriminate needs --music" in result.output
