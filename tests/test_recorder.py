"""The session recording: a Standard MIDI File with the player's track, a track per voice, the
tempo as heard and a marker per answer, valid whenever it is read."""

import mido
import pytest

from bachd.errors import BachdError
from bachd.live.recorder import TICKS_PER_BEAT, Recorder, recording_path


def notes(track) -> list[tuple[int, str, int, int]]:
    """(absolute tick, kind, channel, pitch) of a track's notes."""
    at, found = 0, []
    for message in track:
        at += message.time
        if message.type in ("note_on", "note_off"):
            kind = "on" if message.type == "note_on" and message.velocity else "off"
            found.append((at, kind, message.channel, message.note))
    return found


def test_the_file_has_a_track_per_part_and_keeps_time_through_tempo_changes(tmp_path):
    path = tmp_path / "session.mid"
    recorder = Recorder(path, start_seconds=10.0, bpm=120.0, beats_per_bar=3)
    recorder.player(10.5, 2, 72, 90)  # a beat in at 120 bpm
    recorder.player(11.0, 2, 72, 0)
    recorder.tempo(11.0, 60.0)  # from two beats in, a beat a second
    recorder.answer(12.0)
    recorder.voice(12.0, 0, 74, 80)
    recorder.voice(12.0, 3, 50, 80)
    recorder.voice(13.0, 0, 74, 0)
    recorder.voice(13.0, 3, 50, 0)
    recorder.finish(14.0)
    midi = mido.MidiFile(path)
    assert midi.type == 1 and midi.ticks_per_beat == TICKS_PER_BEAT
    assert [t.name for t in midi.tracks] == ["bachd", "player", "soprano", "alto", "tenor", "bass"]
    beat = TICKS_PER_BEAT
    assert notes(midi.tracks[1]) == [(beat, "on", 2, 72), (2 * beat, "off", 2, 72)]
    assert notes(midi.tracks[2]) == [(3 * beat, "on", 0, 74), (4 * beat, "off", 0, 74)]
    assert notes(midi.tracks[5]) == [(3 * beat, "on", 3, 50), (4 * beat, "off", 3, 50)]
    conductor, at = [], 0
    for message in midi.tracks[0]:
        at += message.time
        conductor.append((at, message.type, getattr(message, "text", None) or getattr(message, "tempo", None)
                          or getattr(message, "numerator", None)))
    assert (0, "time_signature", 3) in conductor
    assert (0, "set_tempo", mido.bpm2tempo(120)) in conductor and (2 * beat, "set_tempo", mido.bpm2tempo(60)) in conductor
    assert (3 * beat, "marker", "answer 1") in conductor
    assert not list(tmp_path.glob(".*.tmp"))  # replaced atomically, nothing left behind


def test_notes_still_sounding_are_ended_in_the_file_but_not_in_the_recording(tmp_path):
    path = tmp_path / "session.mid"
    recorder = Recorder(path, start_seconds=0.0, bpm=60.0)
    recorder.player(1.0, 0, 67, 90)
    recorder.voice(1.0, 1, 60, 80)
    recorder.write(2.0)  # mid-note: the file is whole, with the notes ended now
    assert notes(mido.MidiFile(path).tracks[1]) == [(480, "on", 0, 67), (960, "off", 0, 67)]
    recorder.player(3.0, 0, 67, 0)
    recorder.finish(5.0)  # the player's note ended at 3 s; the alto's still sounded: it ends at 5 s
    midi = mido.MidiFile(path)
    assert notes(midi.tracks[1]) == [(480, "on", 0, 67), (3 * 480, "off", 0, 67)]
    assert notes(midi.tracks[3]) == [(480, "on", 1, 60), (5 * 480, "off", 1, 60)]


def test_a_note_struck_again_while_sounding_is_ended_first_and_a_stray_off_is_dropped(tmp_path):
    path = tmp_path / "session.mid"
    recorder = Recorder(path, start_seconds=0.0, bpm=60.0)
    recorder.player(1.0, 0, 60, 90)
    recorder.player(2.0, 0, 60, 90)  # its note-off was lost
    recorder.player(2.5, 0, 62, 0)  # an off with no on
    recorder.finish(3.0)
    assert notes(mido.MidiFile(path).tracks[1]) == [(480, "on", 0, 60), (960, "off", 0, 60), (960, "on", 0, 60),
                                                   (1440, "off", 0, 60)]


def test_a_folder_gets_a_new_file_named_by_the_time_and_other_names_are_refused(tmp_path):
    import datetime

    when = lambda: datetime.datetime(2026, 12, 4, 21, 30, 5)  # noqa: E731
    assert recording_path(str(tmp_path), now=when) == tmp_path / "bachd-20261204-213005.mid"
    assert recording_path(str(tmp_path / "new") + "/", now=when) == tmp_path / "new" / "bachd-20261204-213005.mid"
    assert recording_path(str(tmp_path / "take.mid")) == tmp_path / "take.mid"
    with pytest.raises(BachdError, match="--record must name a .mid, .musicxml or .mxl file or a folder"):
        recording_path(str(tmp_path / "take.wav"))


def test_a_recording_that_cannot_be_written_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    recorder = Recorder(blocker / "session.mid", start_seconds=0.0, bpm=90.0)
    with pytest.raises(BachdError, match="cannot write the recording"):
        recorder.write(1.0)


def test_a_recording_asked_for_as_a_score_keeps_its_midi_file_and_writes_the_score_at_the_end(tmp_path):
    from music21 import converter

    path = tmp_path / "take.musicxml"
    recorder = Recorder(path, start_seconds=0.0, bpm=60.0)  # a beat a second
    assert recorder.path == tmp_path / "take.mid"
    for beat, (melody, alto, tenor, bass) in enumerate([(72, 67, 64, 48), (71, 67, 62, 43), (72, 64, 55, 48)]):
        recorder.player(beat, 0, melody, 90)  # the melody the player plays, harmonized by bachd
        for voice, pitch in ((1, alto), (2, tenor), (3, bass)):
            recorder.voice(beat, voice, pitch, 80)
        recorder.player(beat + 1, 0, melody, 0)
        for voice, pitch in ((1, alto), (2, tenor), (3, bass)):
            recorder.voice(beat + 1, voice, pitch, 0)
    recorder.write(2.5)
    assert (tmp_path / "take.mid").exists() and not path.exists()  # the score only once it is over
    recorder.finish(4.0)
    score = converter.parse(str(path))
    upper, lower = score.parts
    soprano = [n.pitch.midi for n in upper.recurse().notes if n.getContextByClass("Voice").id == "1"]
    bass = [n.pitch.midi for n in lower.recurse().notes if n.getContextByClass("Voice").id == "2"]
    assert (soprano, bass) == ([72, 71, 72], [48, 43, 48])
    assert recording_path(str(tmp_path / "x.mxl")).suffix == ".mxl"
    with pytest.raises(BachdError, match="--record must name a .mid, .musicxml or .mxl file or a folder"):
        recording_path(str(tmp_path / "x.wav"))
