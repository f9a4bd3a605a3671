"""Musical checks: each figure on hand-made four-voice music where the answer is known,
Bach's own chorales against the margins, and ``bachd eval --music``."""

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from bachd import encoding, music
from bachd.cli import app

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "jsb" / "Jsb16thSeparated.trainvalid.json"


def tokens(rows, attacks=None) -> np.ndarray:
    pitches = np.array(rows, dtype=np.float64)
    return encoding.encode_pitches(np.where(pitches < 0, np.nan, pitches), attacks)


def chords(*rows, steps_each=4) -> np.ndarray:
    return tokens([row for row in rows for _ in range(steps_each)])


def test_parallel_fifths_and_octaves_are_counted_only_in_similar_motion():
    # C major to D minor with the outer voices in octaves and tenor/bass in fifths: both move up.
    parallel = chords([72, 64, 55, 48], [74, 65, 57, 50])
    counts = music.piece_counts(parallel)
    # S-B octaves (72/48 → 74/50) and T-B fifths (55/48 → 57/50); S-T is a fourth, not counted.
    assert counts["parallels"] == 2
    # Contrary motion into the same intervals is not a parallel.
    contrary = chords([72, 64, 55, 48], [74, 65, 53, 43])
    assert music.piece_counts(contrary)["parallels"] == 0
    # A held fifth is not a parallel either.
    assert music.piece_counts(chords([72, 64, 55, 48], [72, 64, 55, 48]))["parallels"] == 0


def test_voice_crossing_range_and_density():
    crossed = chords([64, 67, 55, 48], [64, 62, 55, 48])  # alto above soprano in the first chord
    counts = music.piece_counts(crossed)
    assert counts["crossing_steps"] == 4
    high = chords([84, 67, 55, 48])  # a soprano C6 is above any chorale soprano
    figures = music.measure([high])
    assert figures["out_of_range_pct"] == pytest.approx(25.0)
    # Quarter notes in every voice: one attack per beat each.
    walking = chords([72, 64, 55, 48], [74, 65, 57, 50], [76, 67, 59, 52], [77, 69, 60, 53])
    figures = music.measure([walking])
    assert [figures[f"density_{v}"] for v in encoding.VOICES] == [1.0, 1.0, 1.0, 1.0]


def test_key_detection_and_in_key_share():
    c_major = chords([72, 64, 55, 48], [71, 65, 55, 43], [72, 64, 55, 48], [74, 65, 57, 50], [72, 64, 55, 48])
    assert music.detect_key(encoding.decode_pitches(c_major)[0]) == (0, False)
    a_minor = chords([72, 64, 57, 45], [71, 64, 56, 52], [72, 64, 57, 45], [74, 65, 57, 50], [71, 68, 64, 52], [69, 64, 60, 45])
    assert music.detect_key(encoding.decode_pitches(a_minor)[0]) == (9, True)
    assert music.measure([a_minor])["in_key_pct"] == 100.0  # the raised 7th (G#) belongs to A minor
    chromatic = chords([72, 64, 55, 48], [73, 64, 55, 48], [72, 64, 55, 48], [72, 64, 55, 48], [74, 65, 57, 50])
    assert music.measure([chromatic])["in_key_pct"] == pytest.approx(80.0)


def test_collapse_and_longest_chord():
    varied = np.concatenate([chords([72, 64, 55, 48], [74, 65, 57, 50], [76, 67, 60, 48], [74, 65, 59, 43])] * 5)
    assert not music.collapses(encoding.decode_pitches(varied)[0])
    one_chord = chords([72, 64, 55, 48], steps_each=80)
    assert music.collapses(encoding.decode_pitches(one_chord)[0])
    assert music.measure([one_chord])["longest_chord_beats"] == 20.0
    # Harmony moving over a bass stuck on one pitch for four bars is a collapse too.
    rows = [[72 + (k % 3), 64 + (k % 2), 55 + (k % 4), 48] for k in range(20) for _ in range(4)]
    assert music.collapses(encoding.decode_pitches(tokens(rows))[0])


def test_margins_compare_in_the_stated_direction():
    above = music.Margin(0.5, side="above")
    assert above.allows(0.4, 0.1) and not above.allows(0.7, 0.1) and above.allows(0.0, 0.1)
    relative = music.Margin(0.25, "rel")
    assert relative.allows(1.2, 1.0) and not relative.allows(0.7, 1.0)
    corpus = {key: 1.0 for key in music.MARGINS}
    rows = music.compare({**corpus, "parallels_per_100": 2.0}, corpus)
    assert [r["figure"] for r in rows if not r["ok"]] == ["parallels_per_100"]


@pytest.mark.skipif(not DATA.exists(), reason="needs ../shared/data (JSB chorales)")
def test_bachs_own_chorales_are_within_every_margin_of_the_corpus():
    from bachd.corpus import load_corpus

    corpus = load_corpus(str(DATA))
    train = music.measure(music.crops([p.tokens for p in corpus.split("train")], 256))
    valid = music.measure(music.crops([p.tokens for p in corpus.split("valid")], 256))
    assert all(row["ok"] for row in music.compare(valid, train)), music.compare(valid, train)
    assert train["parallels_per_100"] < 0.5 and train["in_key_pct"] > 75 and train["out_of_range_pct"] == 0.0


def test_eval_music_report_on_a_model_and_on_midi_files(tiny_model_path, tiny_json_corpus, tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["eval", str(tiny_model_path), "--corpus", str(tiny_json_corpus), "--split", "valid",
                                 "--music", "--pieces", "3", "--bars", "4", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["music"]["model"]["pieces"] == 3 and report["music"]["model"]["steps"] == 3 * 64
    assert {r["figure"] for r in report["music"]["rows"]} == set(music.MARGINS)
    assert "pitch_nll" in report

    from bachd.midifile import write_midi

    write_midi(chords([72, 64, 55, 48], steps_each=64), tmp_path / "stuck.mid", bpm=90, beats_per_bar=4)
    result = runner.invoke(app, ["eval", str(tmp_path / "stuck.mid"), "--corpus", str(tiny_json_corpus),
                                 "--split", "valid", "--music", "--check"])
    assert result.exit_code == 1
    assert "longest unchanged chord" in result.stdout and "OUTSIDE" in result.stdout
    result = runner.invoke(app, ["eval", str(tmp_path / "stuck.mid"), "--corpus", str(tiny_json_corpus)])
    assert result.exit_code == 1 and "pass --music" in result.output
