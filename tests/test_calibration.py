"""The model's melodic-interval calibration (bachd calibrate), the compass, and a close's longer chord."""

import json
import shutil
import zipfile

import numpy as np
import pytest
from typer.testing import CliRunner

from bachd.cli import app
from bachd.errors import BachdError
from bachd.model import calibration as cal
from bachd.model.sampling import COMPASS, ChordClock, Compass, Sampler, SamplingConfig
from bachd.music import encoding as enc

runner = CliRunner()


def _table(voice: int, interval: int, nats: float) -> np.ndarray:
    table = np.zeros((enc.NUM_VOICES, 2 * cal.REACH + 1))
    table[voice, interval + cal.REACH] = nats
    return table


def test_the_table_offsets_a_moving_voices_next_pitch_by_its_interval_from_the_last_note():
    table = _table(0, 5, 2.0)
    table[0, 2 * cal.REACH] = -1.0  # an octave up, and anything wider up
    calibration = cal.Calibration(table)
    previous = np.array([enc.attack(60), enc.hold(64), enc.REST])
    bias = calibration.bias(0, previous)
    assert bias.shape == (3, enc.VOCAB_SIZE)
    assert bias[0, enc.attack(65)] == 2.0 and bias[1, enc.attack(69)] == 2.0  # a 4th up from each
    assert bias[0, enc.attack(72)] == -1.0 and bias[0, enc.attack(80)] == -1.0  # wider than an octave: the octave's
    assert bias[0, enc.attack(55)] == 0.0 and bias[0, enc.attack(60)] == 0.0
    assert not bias[:, enc.hold(enc.PITCH_LOW)::2].any()  # holds are the rhythm draw's: untouched
    assert not bias[2].any()  # after a rest, no interval
    assert calibration.bias(0, previous, 0.5)[0, enc.attack(65)] == 1.0
    assert calibration.bias(0, previous, 0.0) is None and calibration.bias(0, np.array([enc.REST])) is None
    assert not calibration.bias(1, previous).any()  # another voice's row is all zero


def test_the_spacing_table_offsets_a_lower_voices_note_by_its_distance_under_the_voice_above():
    spacing = np.zeros((enc.NUM_VOICES, cal.SPACING[1] - cal.SPACING[0] + 1))
    spacing[1, 14 - cal.SPACING[0]] = 1.5  # the alto a 9th under the soprano
    spacing[1, -3 - cal.SPACING[0]] = -2.0  # ... or crossed above it by a minor 3rd
    calibration = cal.Calibration(np.zeros((enc.NUM_VOICES, 2 * cal.REACH + 1)), spacing=spacing)
    bias = calibration.bias(1, np.array([enc.attack(60), enc.REST]), upper=np.array([enc.attack(74), enc.hold(72)]))
    assert bias[0, enc.attack(60)] == 1.5 and bias[1, enc.attack(58)] == 1.5
    assert bias[0, enc.attack(77)] == -2.0 and bias[0, enc.attack(62)] == 0.0
    assert calibration.bias(1, np.array([enc.REST]), upper=np.array([enc.REST])) is None
    assert calibration.bias(0, np.array([enc.REST]), upper=np.array([enc.attack(74)])) is None  # the soprano: none


def test_spacing_histograms_count_where_a_moving_voice_lands_under_the_one_above():
    pitches = np.array([[72, 64, 55, 48], [72, 60, 55, 48], [74, 60, 57, 36]])
    attacks = np.array([[1, 1, 1, 1], [0, 1, 0, 0], [1, 1, 1, 1]], bool)  # the alto re-struck at the end
    shares = cal.spacing_histograms([enc.encode_pitches(pitches, attacks)])
    assert np.allclose(shares.sum(axis=1), 1.0)
    column = lambda below: below - cal.SPACING[0]  # noqa: E731
    # alto: 8 under at step 0, 12 under at step 1 (the re-struck 60 at step 2 is no move);
    # tenor: 9 under, then 3 (57 under 60); bass: 7, then 21, clipped to the table at 24 or less
    assert shares[1, column(8)] == shares[1, column(12)] > shares[1, column(14)]
    assert shares[2, column(3)] == shares[2, column(9)] and shares[3, column(21)] == shares[3, column(7)]


def test_a_calibration_written_before_spacing_reads_as_lines_only():
    old = '{"reach": 12, "table": ' + str(np.full((4, 25), 0.5).tolist()) + "}"
    calibration = cal.Calibration.from_json(old)
    assert (calibration.table == 0.5).all() and not calibration.spacing.any()


def test_interval_histograms_count_each_voices_moves_and_leave_out_restrikes():
    pitches = np.full((5, 4), 48)
    pitches[:, 0] = [60, 62, 62, 67, 67]
    attacks = np.zeros((5, 4), bool)
    attacks[:, 0] = [True, True, True, True, False]  # 60, 62, 62 struck again, 67 held
    attacks[0] = True
    tokens = enc.encode_pitches(pitches, attacks)
    shares = cal.interval_histograms([tokens])
    assert shares.shape == (4, 2 * cal.REACH + 1) and np.allclose(shares.sum(axis=1), 1.0)
    assert shares[0, cal.REACH] == 0.0  # the re-strike is not a move
    smoothed = 2 * cal.REACH * cal.SMOOTHING + 2  # every other interval's smoothing, and the two moves
    for interval in (2, 5):
        assert shares[0, cal.REACH + interval] == pytest.approx((1 + cal.SMOOTHING) / smoothed)
    assert shares[0, cal.REACH + 1] == pytest.approx(cal.SMOOTHING / smoothed)
    assert np.allclose(shares[1:, [cal.REACH - 1, cal.REACH + 1]], 1 / (2 * cal.REACH))  # no moves: smoothing only


def test_fitting_moves_the_sampled_intervals_to_the_target_and_stops_short_of_forcing_any():
    rng = np.random.default_rng(0)
    moves = np.array([i for i in range(-cal.REACH, cal.REACH + 1) if i])
    plain = np.exp(-np.abs(moves) / 1.5)  # a model that steps far more than it leaps

    def sample(round_, calibration):
        pieces = []
        for _ in range(40):
            weights = plain * np.exp(calibration.table[:, moves + cal.REACH])  # (4, moves)
            pitches = np.full((65, 4), 0)
            pitches[0] = [72, 64, 57, 45]
            for step in range(1, 65):
                for voice in range(4):
                    p = weights[voice] / weights[voice].sum()
                    nxt = pitches[step - 1, voice] + rng.choice(moves, p=p)
                    pitches[step, voice] = nxt if 24 <= nxt <= 96 else pitches[step - 1, voice] - np.sign(nxt - 60)
            pieces.append(enc.encode_pitches(pitches))
        return pieces

    leapy = np.exp(-np.abs(moves) / 4.0)
    target = np.zeros((4, 2 * cal.REACH + 1))
    target[:, moves + cal.REACH] = leapy / leapy.sum()
    said = []
    spacing = cal.spacing_histograms(sample(0, cal.Calibration(np.zeros_like(target))))  # what it has: no change
    fitted = cal.fit(sample, (target, spacing), 4, said.append)
    gaps = fitted.about["gaps"]
    assert len(gaps) == 5 and len(said) == 5 and "uncalibrated" in said[0]
    assert gaps[-1][0] < gaps[0][0] / 3, gaps
    assert (fitted.table[:, cal.REACH + 7] > 0.5).all()  # leaps of a 5th made likelier in every voice
    assert np.abs(fitted.table).max() <= cal.CLIP and (fitted.table[:, cal.REACH] == 0).all()


def test_generation_takes_the_calibration_on_moving_voices_and_none_at_strength_0():
    from fakes import FakeWhiteKeyEngine

    from bachd.files.generation import generate

    config = SamplingConfig(temperature=1.0, top_p=1.0, key_pull=0.0, cadence_hold=0.0, away_hold=0.0,
                            compass_pull=0.0, allow_parallels=True)
    fifths = cal.Calibration(_table(0, 7, 2.0) + _table(0, -7, 2.0))

    def soprano_fifths(calibration, strength=1.0):
        from dataclasses import replace

        sampler = Sampler(replace(config, interval_calibration=strength), rng_seed=4)
        tokens = generate(FakeWhiteKeyEngine(16), sampler, None, 64, calibration=calibration).tokens
        moves = np.concatenate([np.diff(cal_notes(piece)) for piece in tokens])
        return np.mean(np.abs(moves[moves != 0]) == 7)

    def cal_notes(piece):
        pitches, attacks = enc.decode_pitches(piece)
        return pitches[attacks[:, 0] & (pitches[:, 0] >= 0), 0]

    plain = soprano_fifths(None)
    assert soprano_fifths(fifths) > plain + 0.15
    assert soprano_fifths(fifths, 0.0) == plain  # off: the very same draws

    spacing = np.zeros((enc.NUM_VOICES, cal.SPACING[1] - cal.SPACING[0] + 1))
    spacing[1, 12 - cal.SPACING[0]] = 2.0  # the alto an octave under the soprano
    octaves = cal.Calibration(np.zeros_like(fifths.table), spacing=spacing)

    def alto_octaves(calibration):
        tokens = generate(FakeWhiteKeyEngine(16), Sampler(config, rng_seed=4), None, 64, calibration=calibration).tokens
        return np.mean([cal.spacing_histograms([piece])[1, 12 - cal.SPACING[0]] for piece in tokens])

    assert alto_octaves(octaves) > alto_octaves(None) + 0.1


def test_the_compass_holds_back_a_climbing_voice():
    from fakes import FakeClimbingEngine

    from bachd.files.generation import Seed, generate

    class Climbing(FakeClimbingEngine):  # a nat for each semitone higher: a model that likes to climb
        def step(self, previous, voice, beat):
            return super().step(previous, voice, beat) / 6.0

    chord = [enc.attack(p) for p in (60, 55, 48, 36)]
    seed = Seed(np.array([chord], np.int16), np.ones((1, 4), bool))
    spans = {}
    for pull in (0.0, 3.0):
        config = SamplingConfig(temperature=1.0, top_p=1.0, key_pull=0.0, cadence_hold=0.0, away_hold=0.0,
                                compass_pull=pull, allow_parallels=True, max_chord_beats=0.0)
        pieces = generate(Climbing(16), Sampler(config, rng_seed=0), seed, 32).tokens
        spans[pull] = np.array([[np.ptp(enc.decode_pitches(piece)[0][:, v]) for v in range(4)] for piece in pieces])
    assert (spans[0.0].mean(axis=0) > np.array(COMPASS) + 4).all(), spans[0.0]  # the model alone climbs on
    # A soft pull against a model that must move every 16th: each voice stretches its compass
    # far less (its widest note stays, so once past, the next step past costs less).
    assert (np.median(spans[3.0], axis=0) <= np.median(spans[0.0], axis=0) - 2).all(), (spans[0.0], spans[3.0])


def test_compass_offsets_grow_with_each_semitone_past_the_span_and_forget_after_16_bars():
    compass = Compass(1, 0.5, steps=4)
    assert compass.bias(0) is None
    for soprano in (60, 64, 67, 72):  # an octave so far
        compass.advance(np.array([[enc.attack(soprano), enc.REST, enc.REST, enc.REST]]))
    bias = compass.bias(0)
    assert bias[0, enc.attack(72)] == 0.0 and bias[0, enc.attack(60)] == 0.0
    assert bias[0, enc.attack(74)] == -1.0 and bias[0, enc.attack(57)] == -1.5
    assert compass.bias(1) is None  # a voice that has not sounded
    for _ in range(4):  # the window moves on: only 72 is left
        compass.advance(np.array([[enc.hold(72), enc.REST, enc.REST, enc.REST]]))
    assert compass.bias(0)[0, enc.attack(84)] == 0.0 and compass.bias(0)[0, enc.attack(86)] == -1.0


def test_a_chord_that_closes_a_phrase_may_stand_a_beat_longer():
    clock = ChordClock(2, 2.0)
    chord = np.array([[enc.attack(p) for p in (72, 67, 64, 48)]] * 2)
    held = np.array([[enc.hold(p) for p in (72, 67, 64, 48)]] * 2)
    clock.advance(chord)
    for _ in range(7):
        clock.advance(held)
    longer = np.array([True, False])
    mask = clock.bass_mask(held[:, :3], held[:, 3], True, longer)  # two beats stood
    assert mask[0].all() and not mask[1, enc.hold(48)] and not mask[1, enc.attack(48)]
    for _ in range(4):
        clock.advance(held)
    mask = clock.bass_mask(held[:, :3], held[:, 3], True, longer)  # three beats: the close's too
    assert not mask[0, enc.hold(48)] and not mask[1, enc.hold(48)]


def _copy_model(tiny_model_path, tmp_path):
    model = tmp_path / "mine.keras"
    shutil.copy(tiny_model_path, model)
    return model


@pytest.mark.slow
def test_bachd_calibrate_stores_a_table_in_the_model_that_generate_applies(tiny_model_path, tiny_json_corpus, tmp_path):
    model = _copy_model(tiny_model_path, tmp_path)
    model.chmod(0o644)
    assert cal.read_calibration(model) is None
    args = ["calibrate", str(model), "--corpus", str(tiny_json_corpus), "--pieces", "8", "--bars", "4", "--rounds", "2"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "round 0:" in result.output and "round 2:" in result.output and "stored the calibration" in result.output
    first = cal.read_calibration(model)
    assert first is not None and first.about["corpora"] == [str(tiny_json_corpus)] and len(first.about["gaps"]) == 3
    assert np.abs(first.table).sum() > 0
    result = runner.invoke(app, [*args[:-1], "1"])  # again: the old table replaced, the model whole
    assert result.exit_code == 0, result.output
    with zipfile.ZipFile(model) as archive:
        assert archive.namelist().count(cal.ENTRY) == 1
    assert model.stat().st_mode & 0o777 == 0o644  # rewritten, not made private
    assert len(cal.read_calibration(model).about["gaps"]) == 2
    from bachd.model.modelfile import read_weights

    read_weights(model)
    out, off, on = tmp_path / "a.mid", tmp_path / "off.mid", tmp_path / "on.mid"
    for path, strength in ((out, "1"), (off, "0"), (on, "1")):
        result = runner.invoke(app, ["generate", "-m", str(model), "-o", str(path), "--bars", "4", "--rng-seed", "3",
                                     "--interval-calibration", strength])
        assert result.exit_code == 0, result.output
    assert out.read_bytes() == on.read_bytes() != off.read_bytes()
    music = {}
    for strength in ("0", "1"):  # eval --music writes with the model's calibration too
        result = runner.invoke(app, ["eval", str(model), "--corpus", str(tiny_json_corpus), "--split", "valid",
                                     "--music", "--pieces", "4", "--bars", "4", "--json",
                                     "--interval-calibration", strength])
        assert result.exit_code == 0, result.output
        music[strength] = json.loads(result.output.strip().splitlines()[-1])["music"]["model"]
    assert music["0"] != music["1"]


def test_a_malformed_calibration_is_a_one_line_error_that_says_what_to_do(tiny_model_path, tmp_path):
    model = _copy_model(tiny_model_path, tmp_path)
    with zipfile.ZipFile(model, "a") as archive:
        archive.writestr(cal.ENTRY, '{"reach": 12, "table": [[1, 2]]}')
    with pytest.raises(BachdError, match="malformed.*bachd calibrate"):
        cal.read_calibration(model)
    result = runner.invoke(app, ["generate", "-m", str(model), "-o", str(tmp_path / "x.mid"), "--bars", "4"])
    assert result.exit_code == 1 and "run bachd calibrate again" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "x.mid").exists()
