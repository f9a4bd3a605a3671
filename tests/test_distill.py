"""Distillation (`bachd train --teacher`): the teachers' tables, the crops' part of them,
the loss, and a student that learns what its teacher predicts."""

import numpy as np
import pytest

from bachd.errors import BachdError
from bachd.model.distill import mixture_weights, moves, soft_tables
from bachd.model.keras_model import ModelConfig, load_model
from bachd.model.modelfile import read_card as load_card
from bachd.model.training import SmoothedSparseCrossentropy, TrainConfig, train
from bachd.model.windows import CropSampler, WindowConfig, piece_period, sequence_arrays
from bachd.music import encoding
from bachd.music.corpus import load_corpora

TINY = ModelConfig(embed_dim=8, lstm_units=16, lstm_layers=1, dropout=0.0)


def _config(corpus, out, **kw):
    return TrainConfig(corpora=[str(corpus)], out=str(out), batch_size=4, window=WindowConfig(window_steps=16, passes=1.0), **kw)


@pytest.fixture
def teachers(tiny_json_corpus, tmp_path):
    """Two tiny models of different shapes, trained on the tiny corpus."""
    where = tmp_path / "teachers"
    first, second = where / "first.keras", where / "second.keras"
    train(_config(tiny_json_corpus, first, epochs=1, learning_rate=3e-2), TINY)
    train(_config(tiny_json_corpus, second, epochs=1, learning_rate=3e-2),
          ModelConfig(embed_dim=8, lstm_units=24, lstm_layers=2, dropout=0.0, positions=4))
    return first, second


def test_mixture_weights_are_normalised_and_checked():
    assert mixture_weights(["a", "b"], []) == [0.5, 0.5]
    assert mixture_weights(["a", "b"], [3, 1]) == [0.75, 0.25]
    for weights in ([1.0], [1.0, 0.0]):
        with pytest.raises(BachdError):
            mixture_weights(["a", "b"], weights)
    with pytest.raises(BachdError, match="needs --teacher"):
        mixture_weights([], [1.0])


def test_the_tables_are_the_teachers_mixture_over_whole_transposed_pieces(tiny_json_corpus, teachers):
    pieces = load_corpora([str(tiny_json_corpus)])[0].split("train")
    tables = soft_tables([str(t) for t in teachers], [3.0, 1.0], pieces, transpose=2)
    assert set(tables) == {(i, s) for i, p in enumerate(pieces) for s in moves(p, 2)}
    assert len(tables) > len(pieces)  # the transpositions are there
    index, shift = max(tables, key=lambda key: (key[1], key[0]))
    piece = pieces[index]
    moved = encoding.transpose_tokens(piece.tokens, shift)
    expected = 0.0
    for path, weight in zip(teachers, (0.75, 0.25)):
        model = load_model(path)
        arrays = sequence_arrays(moved, 0, piece.phase, piece.steps, piece_period(piece, model.bachd_config.positions))
        logits = model({k: arrays[k][None] for k in ("tokens", "voices", "beats")}).numpy()[0]
        expected = expected + weight * np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    table = tables[index, shift]
    assert table.dtype == np.float16 and table.shape == (piece.steps * 4, encoding.VOCAB_SIZE)
    assert np.allclose(table, expected, atol=2e-3)


def test_each_crop_carries_its_own_part_of_the_table(tiny_json_corpus):
    """Tables that put all their mass on the piece's own next token, in each transposition:
    every crop's soft targets then name exactly its targets, wherever and however moved."""
    pieces = load_corpora([str(tiny_json_corpus)])[0].split("train")
    tables = {}
    for index, piece in enumerate(pieces):
        for shift in moves(piece, 3):
            flat = encoding.flatten_steps(encoding.transpose_tokens(piece.tokens, shift))
            tables[index, shift] = np.eye(encoding.VOCAB_SIZE, dtype=np.float16)[flat]
    sampler = CropSampler(pieces, WindowConfig(window_steps=16, transpose=3), seed=5, soft=tables)
    for _ in range(50):
        crop = sampler.crop()
        real = crop["weights"] > 0
        assert crop["soft"].shape == (64, encoding.VOCAB_SIZE)
        assert np.array_equal(crop["soft"].argmax(-1)[real], crop["targets"][real])
        assert not crop["soft"][~real].any()


def test_the_loss_mixes_the_notes_and_the_teacher():
    rng = np.random.default_rng(4)
    logits = rng.normal(size=(2, 5, 7)).astype("float32")
    targets = rng.integers(0, 7, (2, 5))
    teacher = rng.dirichlet(np.ones(7), (2, 5)).astype("float32")
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    nll = -np.take_along_axis(log_probs, targets[..., None], -1)[..., 0]
    taught = -(teacher * log_probs).sum(-1)
    packed = np.concatenate([teacher, targets[..., None].astype("float32")], -1)
    assert np.isclose(float(SmoothedSparseCrossentropy(0.0, 0.3)(packed, logits)), (0.7 * nll + 0.3 * taught).mean(), atol=1e-5)
    assert np.isclose(float(SmoothedSparseCrossentropy(0.0, 0.3)(targets, logits)), nll.mean(), atol=1e-5)  # no teacher: NLL
    assert np.isclose(float(SmoothedSparseCrossentropy(0.0, 0.0)(packed, logits)), nll.mean(), atol=1e-5)


def _disagreement(teacher, student, pieces) -> float:
    """Mean KL(teacher || student) over the pieces' tokens."""
    total = count = 0.0
    for piece in pieces:
        arrays = sequence_arrays(piece.tokens, 0, piece.phase, piece.steps, piece_period(piece, 16))
        x = {k: arrays[k][None] for k in ("tokens", "voices", "beats")}
        p, q = (np.asarray(m(x)[0], np.float64) for m in (teacher, student))
        p, q = (a - np.log(np.exp(a).sum(-1, keepdims=True)) for a in (p, q))
        total += (np.exp(p) * (p - q)).sum()
        count += len(p)
    return total / count


def test_a_student_learns_what_its_teacher_predicts(tiny_json_corpus, tmp_path):
    """A teacher whose predictions have nothing to do with the notes (random weights, made
    confident), and the same student run twice: on the notes alone, and on the teacher alone
    (--distill 1). The second ends far closer to the teacher, on the pieces it trained on and
    on the held-out ones."""
    import keras

    from bachd.model.keras_model import build_model, save_model

    keras.utils.set_random_seed(2)
    odd = build_model(TINY)
    kernel = odd.get_layer("logits").kernel
    kernel.assign(kernel * 8.0)
    save_model(odd, tmp_path / "odd.keras")
    plain, taught = tmp_path / "plain.keras", tmp_path / "taught.keras"
    train(_config(tiny_json_corpus, plain, epochs=3, learning_rate=3e-2, seed=11), TINY)
    card = train(_config(tiny_json_corpus, taught, epochs=3, learning_rate=3e-2, seed=11,
                         teachers=[str(tmp_path / "odd.keras")], distill=1.0), TINY)
    assert card["training"]["teachers"] == [str(tmp_path / "odd.keras")] and card["training"]["distill"] == 1.0
    corpus = load_corpora([str(tiny_json_corpus)])[0]
    teacher = load_model(tmp_path / "odd.keras")
    for split in ("train", "valid"):
        pieces = corpus.split(split)
        assert _disagreement(teacher, load_model(taught), pieces) < 0.3 * _disagreement(teacher, load_model(plain), pieces)
    # ...and the notes' NLL, which validation measures and early stopping follows, is the
    # worse for it: the loss is on the teacher, the checkpoint's figure on the notes.
    assert card["metrics"]["valid"]["token_nll"] > load_card(plain)["metrics"]["valid"]["token_nll"]


def test_a_missing_teacher_is_a_clear_error(tiny_json_corpus, tmp_path):
    with pytest.raises(BachdError, match="--teacher: .*does not exist"):
        train(_config(tiny_json_corpus, tmp_path / "m.keras", teachers=[str(tmp_path / "nope.keras")]), TINY)


def test_a_resumed_run_keeps_its_own_teachers(tiny_json_corpus, teachers, tmp_path, capsys):
    out = tmp_path / "student.keras"
    kept = dict(teachers=[str(teachers[0]), str(teachers[1])], teacher_weights=[2.0, 1.0], distill=0.7)
    train(_config(tiny_json_corpus, out, epochs=2, max_minutes=1e-4, **kept), TINY)  # stops after one epoch
    capsys.readouterr()
    card = train(_config(tiny_json_corpus, out, epochs=2), TINY, resume=True)  # the resume names no teacher
    told = capsys.readouterr().err
    assert "teacher first.keras (weight 0.667)" in told and "teacher second.keras (weight 0.333)" in told
    assert card["epochs_run"] == 2 and card["training"]["resumed"]
    assert {k: card["training"][k] for k in kept} == kept
