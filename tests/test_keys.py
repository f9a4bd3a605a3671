"""Keys: names, signatures, Bach's distribution of keys, and pieces from nothing opening in one."""

import numpy as np
import pytest

from bachd.music import encoding, keys, analysis
from bachd.model.engine import make_engine
from bachd.files.generation import generate
from bachd.model.sampling import Sampler, SamplingConfig


@pytest.mark.parametrize("text, key", [
    ("D minor", (2, True)), ("Bb major", (10, False)), ("f#m", (6, True)), ("Eb", (3, False)),
    ("c sharp minor", (1, True)), ("G", (7, False)), ("a min", (9, True)),
])
def test_keys_are_read_as_musicians_write_them(text, key):
    assert keys.parse_key(text) == key
    assert keys.parse_key(keys.key_name(key)) == key


@pytest.mark.parametrize("text", ["H major", "D dorian", "", "7"])
def test_a_string_that_is_no_key_is_refused(text):
    with pytest.raises(ValueError, match="not a key"):
        keys.parse_key(text)


def test_key_signatures():
    assert analysis.key_signature((2, False)) == 2  # D major: two sharps
    assert analysis.key_signature((7, True)) == -2  # G minor: two flats
    assert analysis.key_signature((9, True)) == 0
    assert abs(analysis.key_signature((6, False))) == 6
    assert analysis.key_signature((11, False)) == 5  # B major: remote


def test_keys_drawn_follow_bachs_distribution():
    drawn = keys.draw_keys(np.random.default_rng(0), 20000)
    total = sum(keys.BACH_KEYS.values())
    bach_minor = sum(n for (tonic, minor), n in keys.BACH_KEYS.items() if minor) / total
    assert abs(np.mean([minor for _, minor in drawn]) - bach_minor) < 0.02
    assert set(drawn) <= set(keys.BACH_KEYS)
    remote = np.mean([abs(analysis.key_signature(k)) >= analysis.REMOTE_ACCIDENTALS for k in drawn])
    assert remote < 0.03


def test_a_piece_from_nothing_opens_on_the_tonic_triad(tiny_model_path):
    engine = make_engine(tiny_model_path, batch_size=6)
    result = generate(engine, Sampler(SamplingConfig(), rng_seed=3), None, 8, key=(2, True))
    first = encoding.decode_pitches(result.tokens[:, 0])[0]  # (6, 4): each stream's first chord
    assert result.keys == [(2, True)] * 6
    assert set((first % 12).ravel()) <= {2, 5, 9} and (first[:, 3] % 12 == 2).all()
    drawn = generate(engine, Sampler(SamplingConfig(), rng_seed=4), None, 8)
    assert len(drawn.keys) == 6 and all(k in keys.BACH_KEYS for k in drawn.keys)
    for tokens, key in zip(drawn.tokens, drawn.keys):
        chord = encoding.decode_pitches(tokens[:1])[0][0]
        assert set(chord % 12) <= set(keys.tonic_triad(key)) and chord[3] % 12 == key[0]


def test_bachs_keys_are_recounted_from_the_corpus():
    from bachd.music.corpus import load_corpus

    counted: dict = {}
    for piece in load_corpus("bach").pieces:
        key = analysis.detect_key(encoding.decode_pitches(piece.tokens)[0])
        counted[key] = counted.get(key, 0) + 1
    assert counted == keys.BACH_KEYS


def test_the_live_key_tracker_agrees_with_key_finding_and_follows_a_modulation():
    def steps(rows, each=4):
        return [[encoding.attack(p) for p in row] for row in rows for _ in range(each)]

    # Two bars of D minor (i, iv, V, i): the tracker names it as detect_key does.
    d_minor = [[74, 69, 65, 50], [74, 70, 67, 55], [73, 69, 64, 45], [74, 69, 65, 50]] * 2
    tracker = keys.KeyTracker()
    assert tracker.detect() is None  # nothing heard yet
    for row in steps(d_minor):
        tracker.add(row)
    pitches = np.array([[encoding.token_pitch(t) for t in row] for row in steps(d_minor)])
    assert tracker.detect() == analysis.detect_key(pitches) == (2, True)
    # Twelve bars of E major afterwards: the old key fades and the new one is named.
    e_major = [[76, 71, 68, 52], [78, 71, 69, 57], [75, 71, 66, 47], [76, 71, 68, 52]] * 12
    for row in steps(e_major):
        tracker.add(row)
    assert tracker.detect() == (4, False)
    saved = tracker.state()
    tracker.reset()
    assert tracker.detect() is None
    tracker.set_state(saved)
    assert tracker.key == (4, False)


def test_the_live_stream_pulls_its_voices_toward_the_key(tiny_model_path):
    """With a strong pull, what the stream samples after a long D minor context keeps to
    the D minor scale; without it, the tiny model wanders out of it."""
    from bachd.model.engine import make_engine
    from bachd.live.stream import Stream

    scale = {(2 + d) % 12 for d in analysis.MINOR_SCALE}

    def outside_after_context(pull: float) -> int:
        stream = Stream(make_engine(tiny_model_path), Sampler(SamplingConfig(temperature=1.5, top_p=1.0, key_pull=pull, minor_pull=pull), rng_seed=1))
        chord = [74, 69, 65, 50]
        for step in range(32):
            stream.feed(step, {v: encoding.attack(p) if step % 4 == 0 else encoding.hold(p) for v, p in enumerate(chord)})
        assert (stream.keys.key == (2, True)) and ((stream.bias is not None) == (pull > 0))
        outside = 0
        for step in range(32, 160):
            tokens = stream.feed(step, {})
            outside += sum(1 for t in tokens if encoding.is_pitch_token(int(t)) and encoding.token_pitch(int(t)) % 12 not in scale)
        return outside

    assert outside_after_context(0.0) > 0
    assert outside_after_context(10.0) < outside_after_context(0.0) / 4


def test_the_pulls_mark_notes_outside_the_scale_and_the_notes_that_turn_a_minor_key_major():
    d_minor = keys.scale_bias([(2, True)], 1.5, 0.5)[0]
    assert d_minor[encoding.attack(61)] == 0.0 and d_minor[encoding.attack(59)] == 0.0  # C sharp, B natural: raised 7th, 6th
    assert d_minor[encoding.attack(58)] == 0.0  # B flat, the minor 6th
    assert d_minor[encoding.attack(60)] == -0.5  # C natural: the relative major's leading tone, minor_pull's alone
    assert d_minor[encoding.attack(63)] == -1.5  # E flat
    assert d_minor[encoding.hold(60)] == 0.0  # a held note is never pulled
    assert d_minor[encoding.attack(66)] == -2.0  # F sharp, the parallel major's third: outside the scale, and minor_pull's
    only_turning = keys.scale_bias([(2, True)], 0.0, 1.0)[0]
    assert [p for p in range(60, 72) if only_turning[encoding.attack(p)] < 0] == [60, 66]
    assert not keys.scale_bias([(2, False)], 0.0, 1.0).any()  # a major key has nothing to turn
    c_major = keys.scale_bias([(0, False)], 1.0)[0]
    assert sum(c_major[encoding.attack(p)] < 0 for p in range(60, 72)) == 5



def test_the_inner_voices_take_their_share_of_the_key_pull(tiny_model_path):
    """inner_pull lets the alto and tenor step outside the key while the soprano and bass
    stay held to it: offline, where pieces open in a key, and live, on the key tracked."""
    scale = {(2 + d) % 12 for d in analysis.MINOR_SCALE}

    def outside(tokens: np.ndarray) -> np.ndarray:
        """Per voice, the attacks outside the D minor scale."""
        pitches, attacks = encoding.decode_pitches(tokens.reshape(-1, 4))
        return ((pitches >= 0) & attacks & ~np.isin(pitches % 12, list(scale))).sum(axis=0)

    config = dict(temperature=1.5, top_p=1.0, key_pull=10.0, minor_pull=10.0)
    engine = make_engine(tiny_model_path, batch_size=8)
    held = generate(engine, Sampler(SamplingConfig(**config, inner_pull=1.0), rng_seed=5), None, 96, key=(2, True))
    free = generate(engine, Sampler(SamplingConfig(**config, inner_pull=0.0), rng_seed=5), None, 96, key=(2, True))
    held, free = outside(held.tokens), outside(free.tokens)
    assert free[[1, 2]].sum() > 4 * max(held[[1, 2]].sum(), 1)
    assert free[[1, 2]].sum() > 4 * max(free[[0, 3]].sum(), 1)  # the outer voices keep the full pull

    bias = keys.voice_biases([(2, True)], SamplingConfig(key_pull=2.0, minor_pull=0.0, inner_pull=0.25))[0]
    assert bias[0, encoding.attack(63)] == bias[3, encoding.attack(63)] == -2.0  # E flat
    assert bias[1, encoding.attack(63)] == bias[2, encoding.attack(63)] == -0.5
    assert keys.voice_biases([(2, True)], SamplingConfig(key_pull=0.0, minor_pull=0.0)) is None

    from bachd.live.stream import Stream

    stream = Stream(make_engine(tiny_model_path), Sampler(SamplingConfig(**config, inner_pull=0.0), rng_seed=2))
    for step in range(32):
        stream.feed(step, {v: encoding.attack(p) if step % 4 == 0 else encoding.hold(p) for v, p in enumerate([74, 69, 65, 50])})
    assert stream.keys.key == (2, True)
    live = np.array([stream.feed(step, {}) for step in range(32, 160)])
    assert outside(live)[[1, 2]].sum() > 4 * max(outside(live)[[0, 3]].sum(), 1)

# --- the key input ------------------------------------------------------------------------------
def _scale_piece(tonic: int, minor: bool, steps: int = 256) -> np.ndarray:
    """Four voices walking up and down the key's scale around its tonic triad."""
    degrees = (0, 2, 3, 5, 7, 8, 11) if minor else (0, 2, 4, 5, 7, 9, 11)
    walk = [0, 1, 2, 3, 4, 3, 2, 1, 0, 2, 4, 6, 7, 4, 2, 0]
    rows = []
    for step in range(steps):
        index = walk[(step // 4) % len(walk)]
        pitch = lambda base, shift: base + tonic + degrees[(index + shift) % 7] + 12 * ((index + shift) // 7)
        rows.append([pitch(60, 4), pitch(60, 2), pitch(48, 0), pitch(36, 0)])
    return encoding.encode_pitches(np.array(rows))


def test_key_rows_name_every_key_and_move_with_transposition():
    rows = {encoding.key_row((t, m)) for t in range(12) for m in (False, True)}
    assert rows == set(range(1, encoding.KEY_ROWS)) and encoding.key_row(None) == encoding.UNKNOWN_KEY
    assert encoding.transposed_key_row(encoding.key_row((11, True)), 3) == encoding.key_row((2, True))
    assert encoding.transposed_key_row(encoding.UNKNOWN_KEY, 5) == encoding.UNKNOWN_KEY
    assert keys.key_of_tokens(_scale_piece(9, True)) == (9, True)
    assert keys.key_of_tokens(_scale_piece(9, True)[:3]) is None  # too little heard to name a key


def test_training_crops_carry_their_pieces_key_transposed_with_them_or_not_known():
    from bachd.music.corpus import Piece
    from bachd.model.windows import CropSampler, WindowConfig

    pieces = [Piece("d-minor", _scale_piece(2, True).astype(np.int16), "train"),
              Piece("e-flat", _scale_piece(3, False).astype(np.int16), "train")]
    sampler = CropSampler(pieces, WindowConfig(window_steps=64, transpose=3, key_dropout=0.3), seed=1)
    unknown = 0
    for _ in range(400):
        crop = sampler.crop()
        row = int(crop["keys"][0])
        assert (crop["keys"] == row).all()
        if row == encoding.UNKNOWN_KEY:
            unknown += 1
            continue
        steps = crop["targets"].reshape(-1, 4)  # the crop's own notes: the key row moved with them
        assert encoding.key_row(keys.key_of_tokens(steps)) == row
    assert 0.22 < unknown / 400 < 0.38


def test_generation_tells_the_model_the_key_it_opens_in_or_the_seeds():
    from fakes import FakeRestingEngine

    from bachd.files.generation import Seed

    engine = FakeRestingEngine(batch_size=3)
    sampler = Sampler(SamplingConfig(), rng_seed=0)
    generate(engine, sampler, None, 8, key=(7, True))
    assert list(engine.key) == [encoding.key_row((7, True))] * 3
    opened = generate(engine, sampler, None, 8)
    assert list(engine.key) == [encoding.key_row(k) for k in opened.keys]
    seed = _scale_piece(5, False, steps=64)
    generate(engine, sampler, Seed(seed, np.ones(seed.shape, bool)), 8)
    assert engine.key == encoding.key_row((5, False))


def test_the_live_stream_tells_the_model_the_key_heard_so_far():
    from fakes import FakeRestingEngine

    from bachd.live.stream import Stream

    class Spawning(FakeRestingEngine):
        def spawn(self, batch_size):
            return Spawning(batch_size)

    engine = Spawning()
    stream = Stream(engine, Sampler(SamplingConfig(), rng_seed=0))
    assert engine.key == encoding.UNKNOWN_KEY
    piece = _scale_piece(10, False, steps=64)
    for step in range(64):
        stream.feed(step, {v: int(piece[step, v]) for v in range(4)})
    assert stream.keys.key == (10, False)
    assert engine.key == stream.ahead.engines[0].key == encoding.key_row((10, False))
    stream.reset()
    assert engine.key == encoding.UNKNOWN_KEY


def test_a_model_without_the_key_input_loads_and_ignores_it(tmp_path):
    from bachd.model.keras_model import ModelConfig, input_names, load_model

    from conftest import _tiny_model

    assert ModelConfig.from_dict({"embed_dim": 8}).use_key is False  # a card written before the key input
    assert ModelConfig().use_key is False  # bachd train leaves it out unless --key-input
    path = _tiny_model(tmp_path, use_key=False)
    model = load_model(path)
    assert input_names(model.bachd_config) == ("tokens", "voices", "beats")
    engine = make_engine(path)
    engine.set_key(encoding.key_row((0, False)))
    with_key = engine.step(encoding.BOS, 0, 0)
    engine.reset()
    assert np.allclose(with_key, engine.step(encoding.BOS, 0, 0))
    x = {k: np.array([[v]], np.int32) for k, v in (("tokens", encoding.BOS), ("voices", 0), ("beats", 0))}
    assert np.allclose(with_key, model(x).numpy()[0], atol=1e-4)


def test_the_live_tracker_names_the_key_of_a_chorale_from_its_melody():
    """Heard from the soprano alone, step by step, the key a whole chorale ends on is the
    key of Bach's four voices for most of music21's validation chorales: Temperley's
    profiles find a melody's key where Krumhansl-Kessler's (which the checks use on four
    voices) miss it."""
    from bachd.music.corpus import load_corpus

    chorales = load_corpus("bach").split("valid")
    named = {"tracker": 0, "krumhansl": 0}
    for chorale in chorales:
        tracker = keys.KeyTracker()
        for row in chorale.tokens:
            tracker.add(row[:1])
        truth = analysis.detect_key(encoding.decode_pitches(chorale.tokens)[0])
        named["tracker"] += tracker.detect() == truth
        named["krumhansl"] += analysis.key_of_histogram(tracker.histogram) == truth
    assert named["tracker"] >= 0.75 * len(chorales)
    assert named["tracker"] >= named["krumhansl"] + 0.1 * len(chorales)


def test_the_live_key_is_the_players_not_the_harmony_bachd_drew_under_it():
    """Under an E flat major melody, a model that only ever draws C, E, G and A: the key
    tracker names the melody's key, whether a chord is drawn on the spot or ahead, and
    keeps it through an answer that bachd plays alone."""
    from fakes import FakeWhiteKeyEngine

    from bachd.live.stream import Stream

    line = [63, 67, 70, 75, 74, 72, 70, 68, 67, 65, 63, 70, 67, 63, 65, 63] * 2  # a beat each
    melody = [encoding.attack(p) if k == 0 else encoding.hold(p) for p in line for k in range(4)]
    for ahead in (False, True):
        stream = Stream(FakeWhiteKeyEngine(), Sampler(SamplingConfig(key_pull=0.0, minor_pull=0.0), rng_seed=0))
        drawn = set()
        for step, token in enumerate(melody):
            chord = None
            if ahead and step:
                for _ in stream.ahead.compute([int(token)], None) or ():
                    pass
                chord = stream.ahead.chord_for(step, int(token))
                assert chord is not None
            tokens = stream.feed_chord(step, chord) if chord is not None else stream.feed(step, {0: int(token)})
            drawn |= {encoding.token_pitch(int(t)) % 12 for t in tokens[1:] if encoding.is_pitch_token(int(t))}
        assert drawn == {0, 4, 7, 9}  # the harmony sounded, all of it outside E flat major but C and G
        assert stream.keys.key == (3, False)
    for step in range(128, 128 + 256):  # an answer of sixteen bars of C, E, G and A
        stream.feed(step, {})
    assert stream.keys.key == (3, False)
