import numpy as np
import pytest

from bachd.music import encoding as enc
from bachd.model.engine import make_engine
from bachd.errors import BachdError
from bachd.files.generation import Seed, generate
from bachd.model.keras_model import ModelConfig, config_of, load_model
from bachd.model.modelfile import CONFIG_ENTRY, read_config, read_weights
from bachd.model.sampling import Sampler, SamplingConfig


def test_save_load_round_trip_in_safe_mode(tiny_model_path, tmp_path):
    model = load_model(tiny_model_path)
    assert config_of(model) == ModelConfig(embed_dim=8, lstm_units=16, lstm_layers=2, dropout=0.0, use_key=True)
    copy = tmp_path / "copy.keras"
    model.save(str(copy))
    again = load_model(copy)
    x = {k: np.arange(12, dtype=np.int32)[None] % 4 for k in ("tokens", "voices", "beats", "keys")}
    assert np.allclose(model(x).numpy(), again(x).numpy())


def test_attention_is_causal_and_limited_to_its_band():
    """Attention alone (no LSTM path): a token's output depends on exactly the tokens
    0..window-1 back, never on later ones or ones further back."""
    from bachd.model.keras_model import LocalAttention

    window, length = 5, 16
    layer = LocalAttention(window, 2, 3)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(1, length, 8)).astype(np.float32)
    base = layer(x).numpy()
    for changed in (3, 9):
        y = x.copy()
        y[0, changed] += 1.0
        moved = np.abs(layer(y).numpy() - base).max(axis=-1)[0] > 1e-6
        assert list(np.flatnonzero(moved)) == list(range(changed, min(changed + window, length)))


@pytest.mark.parametrize("load", [load_model, read_weights], ids=["keras", "numpy"])
def test_missing_corrupt_and_foreign_models_are_clear_errors(tmp_path, load):
    with pytest.raises(BachdError, match="does not exist"):
        load(tmp_path / "none.keras")
    for name, content in (("bad.keras", b"this is not a zip"), ("empty.keras", b"")):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(BachdError, match="not a readable bachd model"):
            load(tmp_path / name)
    weights_only = tmp_path / "model.h5"
    weights_only.write_bytes(b"")
    with pytest.raises(BachdError, match="expected a .keras file"):
        load(weights_only)
    import keras

    inputs = keras.Input(shape=(3,))
    other = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    other.save(str(tmp_path / "other.keras"))
    with pytest.raises(BachdError, match="not a readable bachd model .*token_embedding"):
        load(tmp_path / "other.keras")


def test_the_model_file_carries_its_config_and_older_files_still_load(tiny_attention_model_path, tmp_path):
    """bachd.json holds the ModelConfig; a file without it (as earlier bachd wrote) gives the
    same config read off its Keras layers, and the same weights."""
    import zipfile

    with zipfile.ZipFile(tiny_attention_model_path) as archive:
        assert CONFIG_ENTRY in archive.namelist()
    config = read_config(tiny_attention_model_path)
    assert config == ModelConfig(embed_dim=8, lstm_units=16, lstm_layers=2, dropout=0.0, attention_steps=3,
                                 attention_heads=2, attention_key_dim=5, use_key=True)
    older = tmp_path / "older.keras"
    load_model(tiny_attention_model_path).save(str(older))  # Keras alone: no bachd.json
    with zipfile.ZipFile(older) as archive:
        assert CONFIG_ENTRY not in archive.namelist()
    assert read_config(older) == config
    new, old = read_weights(tiny_attention_model_path), read_weights(older)
    assert new.arrays.keys() == old.arrays.keys()
    assert all(np.array_equal(new[k], old[k]) for k in new.arrays)


@pytest.mark.parametrize("attention", [False, True], ids=["lstm", "lstm+attention"])
@pytest.mark.parametrize("backend", ["numpy", "tf"])
def test_stepping_token_by_token_equals_the_whole_sequence(tiny_model_path, tiny_attention_model_path, backend, attention):
    """The numpy engine is built from the file alone (no Keras); the tf engine from the
    Keras model. Both give the Keras model's full-sequence logits."""
    path = tiny_attention_model_path if attention else tiny_model_path
    model = load_model(path)
    source = path if backend == "numpy" else model
    rng = np.random.default_rng(0)
    length = 48
    tokens = rng.integers(1, enc.VOCAB_SIZE, size=(2, length)).astype(np.int32)
    voices, beats = enc.side_inputs(length, phase=1)
    keys = enc.key_row((2, False)), enc.key_row((9, True))  # D major, A minor
    full = model({"tokens": tokens, "voices": np.stack([voices] * 2), "beats": np.stack([beats] * 2),
                  "keys": np.array([[k] * length for k in keys], np.int32)}).numpy()
    engine = make_engine(source, batch_size=2, backend=backend)
    engine.set_key(keys)
    stepped = np.stack([engine.step(tokens[:, i], voices[i], beats[i]) for i in range(length)], axis=1)
    assert np.allclose(stepped, full, atol=1e-4), np.abs(stepped - full).max()
    # State can be saved and restored: the same token then gives the same logits.
    state = engine.get_state()
    a = engine.step(tokens[:, 0], 0, 0)
    engine.set_state(state)
    assert np.allclose(engine.step(tokens[:, 0], 0, 0), a)
    engine.reset()  # the key is "not known" again: other logits
    assert not np.allclose(engine.step(tokens[:, 0], voices[0], beats[0]), full[:, 0], atol=1e-4)
    engine.reset()
    engine.set_key(keys)
    assert np.allclose(engine.step(tokens[:, 0], voices[0], beats[0]), full[:, 0], atol=1e-4)
    # One stream (the live path, which has its own code in the numpy engine) agrees too.
    single = make_engine(source, batch_size=1, backend=backend)
    single.set_key(keys[0])
    stepped_one = np.stack([single.step(tokens[:1, i], voices[i], beats[i])[0] for i in range(length)])
    assert np.allclose(stepped_one, full[0], atol=1e-4), np.abs(stepped_one - full[0]).max()


def test_generation_keeps_seed_voices_and_fills_the_others(tiny_model_path):
    model = load_model(tiny_model_path)
    engine = make_engine(model, batch_size=3)
    melody = enc.encode_pitches(np.array([[72, -1, -1, -1]] * 8 + [[74, -1, -1, -1]] * 8))
    known = np.zeros(melody.shape, bool)
    known[:, 0] = True
    seed = Seed(melody, known, phase=0)
    result = generate(engine, Sampler(SamplingConfig(), rng_seed=1), seed, steps=32)
    assert result.tokens.shape == (3, 48, 4) and result.seed_steps == 16
    assert (result.tokens[:, :16, 0] == melody[:, 0]).all()
    for voice, (low, high) in enumerate(enc.VOICE_RANGES):
        pitches, _ = enc.decode_pitches(result.tokens[0])
        column = pitches[16:, voice]
        assert ((column == enc.SILENT) | ((column >= low) & (column <= high))).all()
    again = generate(engine, Sampler(SamplingConfig(), rng_seed=1), seed, steps=32)
    assert np.array_equal(result.tokens, again.tokens)
    assert np.isfinite(result.log_prob).all() and (result.log_prob < 0).all()


def test_evaluation_reports_the_nll_of_the_notes_that_start_apart(tiny_model_path):
    """The attack NLL is the pitch NLL over the targets that start a note, as streaming the
    numpy engine over the same piece computes it."""
    import math

    from bachd.music.corpus import Piece
    from bachd.model.metrics import evaluate_pieces

    rows = [[72, 67, 64, 48]] * 6 + [[74, 67, 65, 50]] * 2 + [[-1, 64, 60, 48]] * 4 + [[76, 72, 67, 48]] * 4
    tokens = enc.encode_pitches(np.array(rows))
    figures = evaluate_pieces(load_model(tiny_model_path), [Piece("p", tokens.astype(np.int16), "valid")])
    engine = make_engine(tiny_model_path, batch_size=1, backend="numpy")
    classes = enc.pitch_class_table()
    total, count, previous = 0.0, 0, enc.BOS
    for step, row in enumerate(tokens):
        for voice in range(4):
            logits = engine.step(previous, voice, step % enc.STEPS_PER_BAR)[0].astype(np.float64)
            target = int(row[voice])
            if enc.is_attack(target):
                probs = np.exp(logits - logits.max())
                probs /= probs.sum()
                total -= math.log(probs[classes == classes[target]].sum())
                count += 1
            previous = target
    assert figures["attack_tokens"] == count == int(sum(enc.is_attack(int(t)) for t in tokens.reshape(-1)))
    assert figures["attack_pitch_nll"] == pytest.approx(total / count, abs=1e-3)
    assert figures["attack_pitch_nll"] != pytest.approx(figures["pitch_nll"], abs=1e-3)
