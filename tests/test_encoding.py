import numpy as np
import pytest

from bachd.music import encoding as enc


def test_token_layout_is_dense_and_distinct():
    tokens = {enc.PAD, enc.BOS, enc.REST}
    for pitch in range(enc.PITCH_LOW, enc.PITCH_HIGH + 1):
        tokens |= {enc.attack(pitch), enc.hold(pitch)}
    assert tokens == set(range(enc.VOCAB_SIZE))
    assert enc.token_pitch(enc.hold(60)) == 60 and enc.is_hold(enc.hold(60)) and enc.is_attack(enc.attack(60))
    with pytest.raises(ValueError):
        enc.attack(enc.PITCH_HIGH + 1)


def test_attack_hold_derived_without_ties():
    pitches = np.array([[60, -1, -1, -1], [60, -1, -1, -1], [62, -1, -1, -1], [-1, -1, -1, -1], [62, -1, -1, -1]])
    tokens = enc.encode_pitches(pitches)
    assert [enc.token_name(t) for t in tokens[:, 0]] == ["attack(60)", "hold(60)", "attack(62)", "REST", "attack(62)"]
    assert np.all(tokens[:, 1:] == enc.REST)


def test_attack_flags_distinguish_repeated_from_held():
    pitches = np.array([[60] * 4] * 4)
    attacks = np.zeros((4, 4), bool)
    attacks[0] = attacks[2] = True  # two half notes of the same pitch: re-struck on step 2
    tokens = enc.encode_pitches(pitches, attacks)
    assert [enc.is_attack(t) for t in tokens[:, 0]] == [True, False, True, False]
    notes = enc.tokens_to_notes(tokens)
    assert [(n.start_step, n.end_step) for n in notes if n.voice == 0] == [(0, 2), (2, 4)]


def test_round_trip_and_nan_silence():
    rng = np.random.default_rng(1)
    pitches = rng.integers(40, 80, size=(50, 4)).astype(float)
    pitches[rng.random((50, 4)) < 0.2] = np.nan
    attacks = rng.random((50, 4)) < 0.5
    tokens = enc.encode_pitches(pitches, attacks)
    back, back_attacks = enc.decode_pitches(tokens)
    expected = np.where(np.isnan(pitches), enc.SILENT, pitches)
    assert np.array_equal(back, expected)
    assert np.array_equal(enc.encode_pitches(back, back_attacks), tokens)


def test_hold_of_other_pitch_decodes_as_attack():
    tokens = np.full((2, 4), enc.REST)
    tokens[0, 0] = enc.attack(60)
    tokens[1, 0] = enc.hold(64)
    notes = enc.tokens_to_notes(tokens)
    assert [(n.pitch, n.start_step, n.end_step) for n in notes] == [(60, 0, 1), (64, 1, 2)]


def test_out_of_range_pitch_is_refused():
    with pytest.raises(ValueError, match="outside"):
        enc.encode_pitches(np.array([[10, 60, 60, 60]]))


def test_transpose_keeps_kind_and_refuses_leaving_range():
    tokens = enc.encode_pitches(np.array([[60, 55, 48, 36], [60, 57, 48, 36]]))
    up = enc.transpose_tokens(tokens, 5)
    back, _ = enc.decode_pitches(up)
    assert back[0].tolist() == [65, 60, 53, 41]
    assert enc.is_hold(up[1, 0]) and enc.is_attack(up[1, 1])
    assert enc.transpose_tokens(tokens, -20) is None


def test_side_inputs_and_pitch_classes():
    voices, beats = enc.side_inputs(12, first_step=1, phase=2, period=enc.STEPS_PER_BEAT)
    assert voices.tolist() == [0, 1, 2, 3] * 3
    assert beats.tolist() == [3] * 4 + [0] * 4 + [1] * 4
    # Within the bar: a piece after a one-beat pickup (phase 12) reaches the downbeat at step 4.
    _, bars = enc.side_inputs(4 * 6, first_step=2, phase=12)
    assert bars[::4].tolist() == [14, 15, 0, 1, 2, 3]
    _, waltz = enc.side_inputs(4 * 3, first_step=10, phase=0, period=12)
    assert waltz[::4].tolist() == [10, 11, 0]
    assert enc.position_period(16, 12) == 12 and enc.position_period(4, 12) == 4
    table = enc.pitch_class_table()
    assert table[enc.attack(61)] == table[enc.hold(61)] != table[enc.attack(62)]
    assert table[enc.REST] == 0
    assert enc.fold_pitch(100, 40, 80) == 76 and enc.fold_pitch(20, 40, 80) == 44
