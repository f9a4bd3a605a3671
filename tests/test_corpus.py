import json

import mido
import numpy as np
import pytest

from bachd.music import encoding as enc
from bachd.music.corpus import hash_split, load_corpus, score_to_pitches
from bachd.errors import BachdError

from conftest import SHARED_DATA, chorale_like


def test_json_corpus_keeps_its_split_and_derives_holds(tiny_json_corpus):
    corpus = load_corpus(str(tiny_json_corpus))
    assert [len(corpus.split(s)) for s in ("train", "valid", "test")] == [6, 2, 1]
    piece = corpus.split("train")[0]
    assert piece.tokens.shape == (96, 4)
    assert enc.is_attack(piece.tokens[0, 0]) and enc.is_hold(piece.tokens[1, 0])
    assert piece.tokens[31, 0] == enc.REST and enc.is_attack(piece.tokens[32, 0])


def test_loading_is_cached_and_deterministic(tiny_json_corpus):
    first = load_corpus(str(tiny_json_corpus))
    second = load_corpus(str(tiny_json_corpus))
    assert [p.name for p in first.pieces] == [p.name for p in second.pieces]
    assert all(np.array_equal(a.tokens, b.tokens) for a, b in zip(first.pieces, second.pieces))
    assert hash_split("bach/bwv269") == hash_split("bach/bwv269")


def test_bad_pieces_are_skipped_by_name(tmp_path):
    path = tmp_path / "mixed.json"
    path.write_text(json.dumps({"train": [chorale_like(32), [[200, 60, 50, 40]] * 8, "junk"]}))
    corpus = load_corpus(str(path))
    assert len(corpus.pieces) == 1
    assert any("mixed/train/1" in s and "outside" in s for s in corpus.skipped)
    assert any("mixed/train/2" in s for s in corpus.skipped)


def test_missing_empty_and_wrong_corpora_are_clear_errors(tmp_path):
    with pytest.raises(BachdError, match="does not exist"):
        load_corpus(str(tmp_path / "nope.json"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(BachdError, match="no .mid files"):
        load_corpus(str(tmp_path / "empty"))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(BachdError, match="not a readable JSON"):
        load_corpus(str(bad))


def _object_npz(path, **arrays):
    np.savez(path, **{k: np.array(v + [None], dtype=object)[:-1] for k, v in arrays.items()})


def test_npz_that_needs_pickle_is_refused_unless_allowed(tmp_path):
    path = tmp_path / "jsb.npz"
    _object_npz(path, train=[np.array(chorale_like(40), dtype=np.float16)], valid=[np.array(chorale_like(20), dtype=np.float16)])
    with pytest.raises(BachdError, match="--allow-pickle"):
        load_corpus(str(path))
    corpus = load_corpus(str(path), allow_pickle=True)
    assert [len(corpus.split(s)) for s in ("train", "valid")] == [1, 1]


def test_js_fakes_npz_layout_gets_a_hash_split(tmp_path):
    path = tmp_path / "fakes.npz"
    _object_npz(path, pitches=[np.array(chorale_like(40), dtype=float) for _ in range(5)], chords=[np.zeros(40)] * 5)
    corpus = load_corpus(str(path), allow_pickle=True)
    assert len(corpus.pieces) == 5 and all(p.split == hash_split(p.name) for p in corpus.pieces)


def _write_four_track_midi(path, notes_per_voice=8):
    mid = mido.MidiFile(ticks_per_beat=96)
    for voice, base in enumerate((72, 67, 60, 48)):
        track = mido.MidiTrack()
        for k in range(notes_per_voice):
            track.append(mido.Message("note_on", note=base + k % 2, velocity=70, channel=voice, time=0))
            track.append(mido.Message("note_off", note=base + k % 2, channel=voice, time=96))
        mid.tracks.append(track)
    mid.save(path)


def test_midi_folder_reads_tracks_as_voices_and_skips_bad_files(tmp_path):
    folder = tmp_path / "midi"
    folder.mkdir()
    _write_four_track_midi(folder / "good.mid")
    (folder / "broken.mid").write_bytes(b"MThd\x00\x00garbage")
    corpus = load_corpus(str(folder))
    assert [p.name for p in corpus.pieces] == ["good.mid"]
    assert any("broken.mid" in s for s in corpus.skipped)
    pitches, attacks = enc.decode_pitches(corpus.pieces[0].tokens)
    assert pitches[0].tolist() == [72, 67, 60, 48] and pitches[4].tolist() == [73, 68, 61, 49]
    assert attacks[::4].all() and not attacks[1:4].any()


def test_music21_chorale_gives_satb_with_ties_as_holds():
    from music21 import corpus as m21corpus

    pitches, attacks, phase, bar_steps = score_to_pitches(m21corpus.parse("bach/bwv269"))
    # BWV 269 is in 3/4 and opens on a one-beat pickup: its first step is on the third beat.
    assert pitches.shape[1] == 4 and pitches.shape[0] > 100 and (phase, bar_steps) == (8, 12)
    assert score_to_pitches(m21corpus.parse("bach/bwv347"))[2:] == (12, 16)  # 4/4, one-beat pickup
    sounding = ~np.isnan(pitches)
    assert np.all(np.nanmean(pitches, axis=0)[:-1] > np.nanmean(pitches, axis=0)[1:])  # S > A > T > B
    assert attacks[sounding].mean() < 0.5  # most 16th steps continue a note


@pytest.mark.skipif(not SHARED_DATA.exists(), reason="../shared/data is not present")
def test_shared_jsb_json_loads_with_the_published_sizes():
    corpus = load_corpus(str(SHARED_DATA / "jsb" / "Jsb16thSeparated.trainvalid.json"))
    assert len(corpus.split("train")) == 229 and len(corpus.split("valid")) == 76
    assert sum(p.steps for p in corpus.split("train")) == 55228
