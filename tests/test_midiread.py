"""The bounded MIDI reader: crafted files refused in one line naming the limit, honest files
read as mido reads them, and thousands of mutated files each refused or read within bounds."""

from __future__ import annotations

import io
import random

import mido
import pytest
from typer.testing import CliRunner

from bachd.cli import app
from bachd.errors import BachdError
from bachd.files.replay import read_line
from bachd.music.midifile import grid_of, read_midi
from bachd.music.midiread import LIMITS, read_bytes, read_file
from fakes import END, melody_file, one_note, raw_file, vlq


def saved(mid: mido.MidiFile) -> bytes:
    buffer = io.BytesIO()
    mid.save(file=buffer)
    return buffer.getvalue()


def refusal(data: bytes) -> str:
    with pytest.raises(BachdError) as caught:
        read_bytes(data, "x.mid")
    message = str(caught.value)
    assert "\n" not in message and message.startswith("x.mid: ")
    return message


def test_crafted_files_are_refused_in_one_line_naming_the_limit():
    # 37 bytes: one beat a tick, one note of 0x0FFFFFFF ticks (it wedged the studio).
    wedge = one_note(1, 0x0FFFFFFF)
    assert len(wedge) == 37
    assert f"{LIMITS.beats:,} beats" in refusal(wedge)
    # A 20-minute note at an honest division: the length in seconds.
    assert "at most 10:00" in refusal(one_note(480, 480 * 2400, tempo=500_000))
    assert "ticks_per_beat is 0" in refusal(one_note(0, 480))
    assert "SMPTE" in refusal(one_note(0xE728, 480))  # a negative division: frames, not beats
    assert "a tempo of 0" in refusal(one_note(480, 480, tempo=0))
    assert "ends in the middle of a track" in refusal(one_note(480, 480)[:-5])
    assert "not a readable MIDI file" in refusal(b"RIFF" + bytes(40))
    assert "MB" in refusal(b"MThd" + bytes(LIMITS.size))
    tracks = raw_file(480, *[END] * (LIMITS.tracks + 1))
    assert f"at most {LIMITS.tracks} tracks" in refusal(tracks)


def test_note_and_tempo_change_counts_are_limited():
    notes = b"".join(b"\x00\x90\x3c\x40\x01\x80\x3c\x00" for _ in range(LIMITS.notes + 1))
    assert f"at most {LIMITS.notes:,}" in refusal(raw_file(480, notes + END))
    read_bytes(raw_file(480, notes[: 8 * LIMITS.notes] + END))  # the limit itself is read
    tempos = b"".join(b"\x01\xff\x51\x03\x07\xa1\x20" for _ in range(LIMITS.tempo_changes + 1))
    assert f"at most {LIMITS.tempo_changes:,}" in refusal(raw_file(480, tempos + END))


def test_the_tempo_map_agrees_with_mido_for_every_note():
    mid = mido.MidiFile(ticks_per_beat=96)
    conductor = mido.MidiTrack()
    for index in range(3000):  # a tempo change every tick-ish: quadratic before, linear now
        conductor.append(mido.MetaMessage("set_tempo", tempo=300_000 + (index * 7919) % 400_000, time=index % 3))
    line = mido.MidiTrack()
    for index in range(400):
        line.append(mido.Message("note_on", note=60 + index % 12, velocity=70, time=5))
        line.append(mido.Message("note_off", note=60 + index % 12, time=7))
    mid.tracks += [conductor, line]
    data = read_bytes(saved(mid))
    onsets = []
    now = 0.0
    for message in mid:  # mido's own seconds, merged tracks
        now += message.time
        if message.type == "note_on" and message.velocity:
            onsets.append(now)
    assert [round(data.seconds(n.start), 6) for n in data.notes] == pytest.approx([round(t, 6) for t in onsets], abs=1e-6)
    assert data.length_seconds == pytest.approx(mid.length, abs=1e-6)


def test_the_longest_file_the_limits_allow_reads_as_a_grid_in_bounded_memory():
    """Every pitch held across the whole length, in one stream, at the longest a file may be
    (a 37-byte file once asked the grid for a billion steps)."""
    beats = LIMITS.beats - 1
    body = b"\x00\xff\x51\x03" + (150_000).to_bytes(3, "big")  # 400 bpm: 4,000 beats in ten minutes
    body += b"".join(b"\x00\x90" + bytes([pitch]) + b"\x40" for pitch in range(24, 96))
    body += b"".join(vlq(beats * 4 if pitch == 24 else 0) + b"\x80" + bytes([pitch]) + b"\x00" for pitch in range(24, 96))
    pitches, attacks, voices = grid_of(read_bytes(raw_file(4, body + END)))
    assert pitches.shape == (beats * 4, 4) and voices == 4
    assert pitches[0].tolist() == [95, 94, 93, 24] and (pitches == pitches[0]).all()
    assert attacks[0].all() and not attacks[1:].any()


def test_mutated_files_are_refused_in_one_line_or_read_within_the_limits(tmp_path):
    """A fuzz test: 3000 mutations of honest files (bytes flipped, cut, repeated, lengths and
    times made huge); each is read within the limits by every reader, or refused in one line."""
    seeds = [
        saved(mido.MidiFile(str(melody_file(tmp_path / "m.mid", [60, 62, 64, 65, 67], bpm=96,
                                            extra_tracks=[([48, 50, 52], 1)])))),
        one_note(480, 960, tempo=600_000),
        raw_file(24, b"".join(b"\x00\xff\x51\x03\x07\xa1\x20\x06\x90\x40\x50\x06\x40\x00" for _ in range(30)) + END),
    ]
    rng = random.Random(41)
    outcomes = {"read": 0, "refused": 0}
    for _ in range(3000):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            where = rng.randrange(len(data))
            how = rng.randrange(5)
            if how == 0:
                data[where] = rng.randrange(256)
            elif how == 1:
                del data[where: where + rng.randint(1, 8)]
            elif how == 2:
                data[where:where] = data[where: where + rng.randint(1, 64)] * rng.randint(1, 50)
            elif how == 3:
                data[where:where] = vlq(rng.choice([0x0FFFFFFF, 0x7F7F7F, 1 << rng.randrange(28)]))
            else:
                data[where: where + 2] = rng.choice([b"\x00\x00", b"\xff\xff", b"\x80\x00", b"\x7f\xff"])
        try:
            parsed = read_bytes(bytes(data), "f.mid")
            assert len(parsed.notes) <= LIMITS.notes and len(parsed.tempos) <= LIMITS.tempo_changes
            assert parsed.end_tick <= LIMITS.beats * parsed.ticks_per_beat and parsed.length_seconds <= LIMITS.seconds
            assert 0 < parsed.ticks_per_beat <= LIMITS.ticks_per_beat and parsed.tracks <= LIMITS.tracks
            try:
                pitches, _, _ = grid_of(parsed)
                assert len(pitches) <= LIMITS.beats * 4 + 4
                read_line(tmp_path / "f.mid", top_line=True, data=parsed)
            except BachdError as error:  # no notes, drums only: refused in one line too
                assert "\n" not in str(error)
            outcomes["read"] += 1
        except BachdError as error:
            assert "\n" not in str(error) and str(error).startswith("f.mid: ")
            outcomes["refused"] += 1
    assert outcomes["read"] > 100 and outcomes["refused"] > 100, outcomes


def test_every_command_that_reads_a_file_refuses_a_crafted_one_in_one_line(tmp_path):
    wedge = tmp_path / "wedge.mid"
    wedge.write_bytes(one_note(1, 0x0FFFFFFF))
    zero = tmp_path / "zero.mid"
    zero.write_bytes(one_note(480, 480, tempo=0))
    runner = CliRunner()
    for args in (["harmonize", "{f}", "-o", "{tmp}/h.mid"], ["continue", "{f}", "-o", "{tmp}/c.mid"],
                 ["generate", "--seed-file", "{f}", "-o", "{tmp}/g.mid"], ["render", "{f}", "-o", "{tmp}/r.wav"]):
        for crafted, limit in ((wedge, "beats"), (zero, "a tempo of 0")):
            result = runner.invoke(app, [a.format(f=crafted, tmp=tmp_path) for a in args])
            assert result.exit_code == 1 and limit in result.output, (args, result.output)
            assert "Traceback" not in result.output and result.output.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wedge.mid", "zero.mid"]  # nothing written


def test_files_on_disk_are_sized_before_they_are_read(tmp_path):
    big = tmp_path / "big.mid"
    with open(big, "wb") as handle:
        handle.write(b"MThd")
        handle.truncate(LIMITS.size + 1)
    with pytest.raises(BachdError, match=r"big.mid: 2.0 MB; bachd reads MIDI files of at most 2.0 MB"):
        read_file(big)
    with pytest.raises(BachdError, match="a folder, not a MIDI file"):
        read_midi(tmp_path)
