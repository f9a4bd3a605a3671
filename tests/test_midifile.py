import mido
import numpy as np
import pytest

from bachd.music import encoding as enc
from bachd.errors import BachdError
from bachd.music.midifile import TICKS_PER_STEP, read_midi, write_midi


def _tokens():
    pitches = np.array([[72, 67, 60, 48]] * 8 + [[-1, 67, 60, 48]] * 4 + [[74, 65, 62, 47]] * 4)
    attacks = np.zeros(pitches.shape, bool)
    attacks[0] = True
    attacks[4, 1] = True  # the alto re-strikes its G on step 4
    return enc.encode_pitches(pitches, attacks)


def test_written_file_parses_back_with_voices_timing_and_balanced_offs(tmp_path):
    path = tmp_path / "out.mid"
    write_midi(_tokens(), path, bpm=120)
    mid = mido.MidiFile(path)
    assert mid.ticks_per_beat == 4 * TICKS_PER_STEP
    tempos = [m.tempo for m in mid.tracks[0] if m.type == "set_tempo"]
    assert tempos == [500000]  # 120 bpm: a 16th step is 125 ms
    assert len(mid.tracks) == 5
    for voice, track in enumerate(mid.tracks[1:]):
        now, sounding, onsets = 0, {}, []
        for message in track:
            now += message.time
            if message.type == "note_on" and message.velocity:
                assert message.channel == voice and message.note not in sounding
                sounding[message.note] = now
                onsets.append((message.note, now // TICKS_PER_STEP))
            elif message.type in ("note_on", "note_off"):
                assert message.note in sounding
                del sounding[message.note]
        assert not sounding, "every note-on has its note-off"
        if voice == 0:
            assert onsets == [(72, 0), (74, 12)]  # held 8 steps, silent 4: no note in the rest
        if voice == 1:
            assert onsets == [(67, 0), (67, 4), (65, 12)]  # repeated note re-struck


def test_total_length_matches_steps(tmp_path):
    path = tmp_path / "out.mid"
    write_midi(_tokens(), path, bpm=90)
    assert mido.MidiFile(path).length == pytest.approx(16 * 60 / 90 / 4, rel=1e-6)


def test_read_back_round_trip(tmp_path):
    path = tmp_path / "out.mid"
    tokens = _tokens()
    write_midi(tokens, path)
    pitches, attacks, voices = read_midi(path)
    assert voices == 4
    assert np.array_equal(enc.encode_pitches(pitches, attacks), tokens)


def test_single_melody_and_bad_files(tmp_path):
    mid = mido.MidiFile(ticks_per_beat=480)
    track = mido.MidiTrack()
    for note in (60, 62, 64):
        track += [mido.Message("note_on", note=note, velocity=90, time=0), mido.Message("note_off", note=note, time=480)]
    mid.tracks.append(track)
    mid.save(tmp_path / "melody.mid")
    pitches, attacks, voices = read_midi(tmp_path / "melody.mid")
    assert voices == 1 and pitches[:, 0].tolist() == [60] * 4 + [62] * 4 + [64] * 4
    assert (pitches[:, 1:] == enc.SILENT).all()
    (tmp_path / "bad.mid").write_bytes(b"not midi")
    with pytest.raises(BachdError, match="not a readable MIDI"):
        read_midi(tmp_path / "bad.mid")
    with pytest.raises(BachdError, match="no such file"):
        read_midi(tmp_path / "missing.mid")


def test_a_pickup_is_written_where_its_bar_lines_fall(tmp_path):
    """A piece whose first step is the fourth beat of its bar starts 12 steps into the file,
    and reads back with those steps silent."""
    path = tmp_path / "pickup.mid"
    tokens = _tokens()
    write_midi(tokens, path, offset_steps=12, marker_step=4)
    mid = mido.MidiFile(path)
    first_on = min(sum(m.time for m in track[: i + 1]) for track in mid.tracks[1:]
                   for i, m in enumerate(track) if m.type == "note_on")
    assert first_on == 12 * TICKS_PER_STEP
    marker = [m for m in mid.tracks[0] if m.type == "marker"]
    assert sum(m.time for m in mid.tracks[0][: mid.tracks[0].index(marker[0]) + 1]) == 16 * TICKS_PER_STEP
    pitches, attacks, _ = read_midi(path)
    assert (pitches[:12] == enc.SILENT).all()
    assert np.array_equal(enc.encode_pitches(pitches[12:], attacks[12:]), tokens)
