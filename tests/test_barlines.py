"""Where the bar lines fall in arrays that carry none (bachd.music.barlines), checked against the
bar lines of music21's chorales."""

import numpy as np

from bachd.music import encoding as enc
from bachd.music import barlines


def test_note_lengths_count_each_note_from_its_attack():
    rows = [[72, 67, -1, 48]] * 3 + [[72, 69, -1, 48]] + [[-1, 69, 60, 50]] * 2
    attacks = np.zeros((6, 4), bool)
    attacks[0] = attacks[3, 0] = attacks[3, 1] = attacks[4, 2] = attacks[4, 3] = True
    lengths = barlines.note_lengths(enc.encode_pitches(np.array(rows), attacks))
    assert lengths[:, 0].tolist() == [3, 0, 0, 1, 0, 0]  # re-struck at step 3, then a rest
    assert lengths[:, 1].tolist() == [3, 0, 0, 3, 0, 0]
    assert lengths[:, 2].tolist() == [0, 0, 0, 0, 2, 0]
    assert lengths[:, 3].tolist() == [4, 0, 0, 0, 2, 0]


def test_bar_lines_of_bachs_chorales_are_recovered_from_the_notes_alone():
    """music21's 4/4 chorales know their bar lines; the shipped weights find them from the
    notes, and a refit on four fifths finds those of the other fifth."""
    from bachd.music.corpus import load_corpus

    pieces = [p for p in load_corpus("bach").pieces if p.bar_steps == 16 and p.phase % 4 == 0]
    assert len(pieces) > 300
    truth = np.array([barlines.CANDIDATES.index(p.phase) for p in pieces])
    pickups = [(p.bar_steps - p.phase) % p.bar_steps for p in load_corpus("bach").pieces]
    assert {n: pickups.count(n) for n in set(pickups)} == barlines.BACH_PICKUPS
    right = np.mean([barlines.estimate_phase(p.tokens) == p.phase for p in pieces])
    assert right > 0.95, right
    assert np.mean(truth == barlines.CANDIDATES.index(12)) < 0.8  # not just the commonest answer
    features = np.array([barlines.phase_features(p.tokens) for p in pieces])
    held_out = np.arange(len(pieces)) % 5 == 0
    weights = barlines.fit_phase_weights(features[~held_out], truth[~held_out])
    assert np.mean((features[held_out] @ weights).argmax(axis=1) == truth[held_out]) > 0.93


def test_pieces_from_nothing_open_as_bachs_do():
    rng = np.random.default_rng(0)
    drawn = np.array([barlines.draw_opening(rng) for _ in range(2000)])
    assert set(drawn) <= {0, 12, 10, 8}
    assert abs(np.mean(drawn == 12) - 250 / 371) < 0.03  # a one-beat pickup
    assert set(barlines.draw_opening(rng, 12) for _ in range(200)) <= {0, 8, 6, 4}  # 3/4
