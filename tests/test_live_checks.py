"""eval --harmonize: the live harmonizer on melodies, measured beside the originals."""

import json
import subprocess
import sys

import numpy as np
import pytest

from bachd.music import encoding as enc
from bachd.files import live_checks as hc

from conftest import cli_env


def chorale(rows):
    """(T, 4) tokens from rows of four pitches (None: silent), each row one beat long."""
    pitches = np.array([[enc.SILENT if p is None else p for p in row] for row in rows for _ in range(4)])
    return enc.encode_pitches(pitches)


# C major: I IV V I over a melody E F D C (the last a half note, a phrase end)
CADENCE = chorale([[76, 67, 60, 48], [77, 69, 60, 53], [74, 67, 59, 55], [72, 64, 55, 48], [72, 64, 55, 48]])


def test_a_perfect_cadence_is_found_and_counted_in_the_home_key():
    counts = hc.piece_counts(CADENCE)
    assert counts["phrase_ends"] == 1 and counts["cadences"] == 1 and counts["home_cadences"] == 1
    assert counts["chord_beats"] == counts["full_beats"] == 5  # every beat a complete triad
    assert counts["chord_changes"] == 3 and counts["parallels"] == counts["antiparallels"] == 0
    figures = hc.summarize([counts])
    assert figures["chord_changes_per_beat"] == 3 / 5 and figures["melody_in_chord_pct"] == 100.0
    # The same close with the bass on the third of the last chord is no cadence.
    inverted = chorale([[76, 67, 60, 48], [77, 69, 60, 53], [74, 67, 59, 55], [72, 64, 55, 52], [72, 64, 55, 52]])
    assert hc.piece_counts(inverted)["cadences"] == 0
    # Steps in a given key (the key of Bach's harmonization): in G major the F chord's beat is out.
    assert hc.summarize([hc.piece_counts(CADENCE, (0, False))])["in_bach_key_pct"] == 100.0
    assert hc.summarize([hc.piece_counts(CADENCE, (7, False))])["in_bach_key_pct"] == 80.0  # 4 of 5 beats
    assert "in_bach_key_pct" not in figures


def test_what_a_listener_hears_is_counted_chord_by_chord():
    from bachd.music import analysis

    assert analysis.consonant_triad(np.array([72, 67, 64, 48]))  # C major, root position
    assert analysis.consonant_triad(np.array([72, 64, 57, 45]))  # A minor: doubled root, no fifth missing
    assert not analysis.consonant_triad(np.array([72, 64, 60, 48]))  # no fifth
    assert not analysis.consonant_triad(np.array([65, 62, 59, 43]))  # G7: complete, but a seventh
    assert not analysis.dissonant(np.array([72, 67, 64, 48])) and not analysis.dissonant(np.array([72, 64, 60, 48]))
    assert analysis.dissonant(np.array([65, 62, 59, 43]))  # the seventh and the tritone
    assert analysis.dissonant(np.array([72, 67, 64, 55]))  # a 6/4: the fourth over the bass
    assert analysis.dissonant(np.array([72, 65, 62, 48]))  # C, F and D over C: a second and a fourth
    assert not analysis.dissonant(np.array([72, enc.SILENT, enc.SILENT, 48]))
    # A G7 for two beats, then the melody's C5 held for two over C E G on beat 3: the alto
    # moves at the 8th and back on the beat, where the bass strikes again. Two changes under
    # held melody notes (14 steps of them), and two phrase ends heard: the F (nothing before
    # it to close from) and the C (the bass stands for its first beat), which closes V-I.
    rows = [[65, 62, 59, 43]] * 8 + [[72, 64, 55, 48]] * 2 + [[72, 65, 55, 48]] * 2 + [[72, 64, 55, 48]] * 4
    pitches = np.array(rows)
    attacks = np.zeros_like(pitches, bool)
    attacks[[0, 8], :] = True
    attacks[10, 1] = attacks[12, 1] = attacks[12, 3] = True
    counts = hc.piece_counts(enc.encode_pitches(pitches, attacks))
    assert counts["held_melody_steps"] == 14 and counts["held_melody_changes"] == 2  # steps 10 and 12
    assert counts["heard_phrase_ends"] == 2 and counts["heard_closes"] == 1
    assert counts["strong_beats"] == 2 and counts["dissonant_strong_beats"] == 1  # the G7 on the downbeat
    assert counts["triad_beats"] == 2 and counts["full_beats"] == 4
    figures = hc.summarize([counts])
    assert figures["held_melody_changes_per_beat"] == round(2 / (14 / 4), 3)
    assert figures["triads_on_beats_pct"] == 50.0 and figures["dissonant_strong_beats_pct"] == 50.0
    # The bass struck again under the C's first beat: no phrase end is heard there.
    attacks[9, 3] = True
    assert hc.piece_counts(enc.encode_pitches(pitches, attacks))["heard_phrase_ends"] == 1


def test_each_figure_with_a_margin_fails_when_bachd_drifts_out_of_it():
    bach = {"triads_on_beats_pct": 70.0, "dissonant_strong_beats_pct": 25.0, "chord_changes_per_beat": 1.5,
            "heard_phrase_ends_per_16_bars": 5.0, "heard_closes_pct": 45.0, "in_bach_key_pct": 85.0,
            "parallels_per_100_changes": 0.6}
    inside = {"triads_on_beats_pct": 63.5, "dissonant_strong_beats_pct": 29.9, "chord_changes_per_beat": 1.72,
              "heard_phrase_ends_per_16_bars": 4.1, "heard_closes_pct": 36.5, "in_bach_key_pct": 83.6,
              "parallels_per_100_changes": 0.0}
    assert all(row["ok"] for row in hc.margin_rows(bach, inside))
    drifted = {"triads_on_beats_pct": 62.0, "dissonant_strong_beats_pct": 30.5, "chord_changes_per_beat": 1.74,
               "heard_phrase_ends_per_16_bars": 3.9, "heard_closes_pct": 35.5, "in_bach_key_pct": 83.4,
               "parallels_per_100_changes": 0.1}
    for name, value in drifted.items():
        rows = {row["figure"]: row for row in hc.margin_rows(bach, inside | {name: value})}
        assert [key for key, row in rows.items() if not row["ok"]] == [name]


def test_contrary_and_similar_fifths_are_told_apart():
    similar = chorale([[72, 67, 64, 60], [74, 69, 65, 62]])  # S-B octave and A-B fifth, all rising
    contrary = chorale([[67, 64, 60, 55], [72, 67, 64, 48]])  # S-B: octave to double octave, opposite ways
    assert hc.piece_counts(similar)["parallels"] > 0 and hc.piece_counts(similar)["antiparallels"] == 0
    assert hc.piece_counts(contrary)["antiparallels"] > 0


def test_the_melody_round_trips_through_events_and_the_grid():
    played = hc.melody_of(CADENCE)
    assert [m[1] for _, m in played.events if m[0] == 0x90] == [76, 77, 74, 72]
    step = 60 / hc.BPM / 4
    sent = [(t, (0x91, 60, 80)) for t, m in played.events if m[0] == 0x90]  # an alto C under each note
    sent += [(played.seconds, (0x81, 60, 0))]
    grid = hc.grid_of(sent, CADENCE, step)
    pitches, attacks = enc.decode_pitches(grid)
    assert (pitches[:, 0] == enc.decode_pitches(CADENCE)[0][:, 0]).all()
    assert (pitches[:, 1] == 60).all() and attacks[[0, 4, 8, 12], 1].all() and not attacks[16, 1]


def eval_json(model, corpus, *args) -> dict:
    result = subprocess.run([sys.executable, "-m", "bachd", "eval", str(model), "--corpus", str(corpus), "--pieces", "2",
                             "--rng-seed", "3", "--json", *args], capture_output=True, text=True, env=cli_env(), timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_eval_harmonize_reports_bach_beside_bachd(tiny_model_path, tiny_json_corpus):
    figures = eval_json(tiny_model_path, tiny_json_corpus, "--harmonize", "--split", "valid")
    assert figures["pieces"] == 2 and figures["melody_notes"] > 0
    assert figures["melody_notes_harmonized"] == figures["melody_notes"]  # every melody note, the first too
    rows = {row["figure"]: row for row in figures["rows"]}
    assert rows["parallels_per_100_changes"]["bachd"] == rows["antiparallels_per_100_changes"]["bachd"] == 0
    assert set(rows) == set(hc.LABELS) and figures["lower_voice_nll"] > 0
    assert figures["settings"]["allow_parallels"] is False


def test_eval_answers_checks_each_answer_against_the_key_of_its_call(tiny_model_path, tiny_json_corpus):
    figures = eval_json(tiny_model_path, tiny_json_corpus, "--answers", "--split", "train")
    assert figures["calls"] == 2 and figures["answered"] == 2  # every call is answered
    assert {figures["bachd_same_key_pct"], figures["bach_same_key_pct"], figures["call_key_named_pct"]} <= {0.0, 50.0, 100.0}


def test_a_melody_with_a_pickup_is_played_where_its_bar_lines_fall(tiny_model_path):
    """A piece whose first step is the last beat of a bar (phase 12) reaches the live
    harmonizer 12 steps after the transport starts, and its harmony is read back in place."""
    step = 60 / hc.BPM / 4
    plain, pickup = hc.melody_of(CADENCE), hc.melody_of(CADENCE, lead=12)
    assert [t + 12 * step for t, _ in plain.events] == pytest.approx([t for t, _ in pickup.events])
    assert pickup.seconds == pytest.approx(plain.seconds + 12 * step)
    from bachd.model.engine import make_engine
    from bachd.presets import resolve

    grid = hc.harmonize(make_engine(tiny_model_path), resolve("harmonizer", {}), CADENCE, phase=12)
    pitches, attacks = enc.decode_pitches(grid)
    assert grid.shape == CADENCE.shape and (pitches[:, 0] == enc.decode_pitches(CADENCE)[0][:, 0]).all()
    assert hc._harmonized([grid]) == int(attacks[:, 0].sum())  # read back under its own melody


def test_a_call_with_a_rest_inside_is_answered_once_after_it_ends(tiny_model_path):
    """eval --answers listens past a rest inside the call, so the one answer it measures
    answers the whole call, as the player meant it (live, a rest of a beat ends a call)."""
    from bachd.model.engine import make_engine
    from bachd.presets import resolve

    S = hc.SILENT
    assert hc._longest_inner_rest(np.array([S, S, 60, 60, S, S, S, S, S, 62, S])) == 5
    assert hc._longest_inner_rest(np.array([S, 60, 60, S])) == 0
    rows = [[72, 67, 64, 48]] * 16 + [[S, 67, 64, 48]] * 8 + [[74, 67, 59, 43]] * 24 + [[72, 67, 64, 48]] * 48
    tokens = enc.encode_pitches(np.array(rows))
    answered = []
    original = hc.perform

    def perform(*args, **kwargs):
        session = original(*args, **kwargs)
        answered.append(session.performer.figures()["answers"])
        return session

    hc.perform = perform
    try:
        figures = hc.answer_keys(make_engine(tiny_model_path), resolve("chorale", {"rng_seed": 0}), [tokens], call_bars=3)
    finally:
        hc.perform = original
    assert answered == [1] and figures["answered"] == 1
