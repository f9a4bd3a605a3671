"""`bachd harmonize` and `bachd continue` on files: the live performers on a simulated
clock, with nothing more to go on than live."""

import mido
import pytest

from bachd.music import encoding as enc
import fakes
from jackprobe import hanging_notes

MELODY = [67, 67, 69, 71, 71, 69, 67, 66, 64]  # a chorale-like line, in quarter notes


def melody_file(path, pitches=MELODY, bpm=100, ticks=480, extra_tracks=()):
    return fakes.melody_file(path, pitches, bpm=bpm, ticks=ticks, extra_tracks=extra_tracks)


def tracks_of(path) -> dict[str, list[tuple[int, int]]]:
    """Track name → (tick, note) of each note-on."""
    out = {}
    for track in mido.MidiFile(path).tracks:
        tick, ons = 0, []
        for message in track:
            tick += message.time
            if message.type == "note_on" and message.velocity:
                ons.append((tick, message.note))
        out[track.name] = ons
    return out


def all_messages(path) -> list[list[int]]:
    return [m.bytes() for track in mido.MidiFile(path).tracks for m in track if not m.is_meta]


def test_harmonize_a_melody_file_every_note_from_the_first(tiny_model_path, tmp_path):
    from bachd.cli import app
    from typer.testing import CliRunner

    drums = ([36, 38, 36, 38], 9)  # a drum track: never taken for the melody
    source = melody_file(tmp_path / "melody.mid", extra_tracks=[drums])
    out = tmp_path / "harmony.mid"
    result = CliRunner().invoke(app, ["harmonize", str(source), "-o", str(out), "--model", str(tiny_model_path), "--rng-seed", "4"])
    assert result.exit_code == 0, result.output
    assert f"{len(MELODY)} melody notes, {len(MELODY)} with a chord struck under them" in result.output
    tracks = tracks_of(out)
    assert [note for _, note in tracks["Melody"]] == MELODY
    for index, voice in enumerate(("Alto", "Tenor", "Bass"), start=1):  # a chord under every melody note, the first too
        onsets = {tick for tick, _ in tracks[voice]}
        assert {tick for tick, _ in tracks["Melody"]} <= onsets, voice
        low, high = enc.VOICE_RANGES[index]
        assert all(low <= note <= high for _, note in tracks[voice])
    assert hanging_notes(all_messages(out)) == {}
    again = tmp_path / "again.mid"
    CliRunner().invoke(app, ["harmonize", str(source), "-o", str(again), "--model", str(tiny_model_path), "--rng-seed", "4"])
    assert all_messages(again) == all_messages(out)  # same seed, same notes at the same times: same harmony


def test_the_file_command_plays_what_the_daemon_plays_to_the_same_notes(tiny_model_path, tmp_path):
    """The daemon, built as `bachd run` builds it, stepped by hand at 1 ms with the melody's
    events at their times: the same messages as `bachd harmonize` wrote."""
    from bachd.live.daemon import Daemon, RunOptions
    from bachd.live.launch import load_engine
    from bachd.presets import resolve
    from bachd.files.replay import perform, read_line
    from fakes import FakePorts

    played = read_line(melody_file(tmp_path / "m.mid"))
    settings = resolve("harmonizer", {"clock": "internal", "bpm": 100.0, "rng_seed": 9})
    session = perform(load_engine(tiny_model_path), settings, played)
    now = [0.0]
    ports = FakePorts()
    daemon = Daemon(RunOptions(settings=settings, model_path=tiny_model_path), ports, load_engine(tiny_model_path), now=lambda: now[0])
    def run_until(t):  # the worker's loop, one 1 ms poll at a time, never past ``t``
        while now[0] < t:
            now[0] = min(t, now[0] + 0.001)
            wake = daemon.performer.next_wakeup(now[0])
            if wake is not None and wake <= now[0]:
                daemon.performer.update(now[0])
            else:
                while daemon.performer.background(now[0]):
                    pass
            daemon.output.send_due(now[0])

    for t, message in played.events:  # each note polled at the moment it arrives
        run_until(t)
        daemon.router.handle(now[0], list(message))
        daemon.performer.update(now[0])
    run_until(played.seconds + 2 * 60 / 100)
    daemon.performer.shutdown()
    assert [tuple(m) for _, m in session.sent] == [tuple(m) for m in ports.sent]
    assert sum(m[0] & 0xF0 == 0x90 and m[2] > 0 for m in ports.sent) >= 3 * len(MELODY)


def test_continue_a_call_file_answers_it_once(tiny_model_path, tmp_path):
    from bachd.cli import app
    from typer.testing import CliRunner

    source = melody_file(tmp_path / "call.mid", [67, 71, 74, 72], bpm=120, ticks=240)
    out = tmp_path / "answer.mid"
    result = CliRunner().invoke(app, ["continue", str(source), "-o", str(out), "--model", str(tiny_model_path),
                                      "--response-bars", "1", "--rng-seed", "2"])
    assert result.exit_code == 0, result.output
    assert "a call of 4 notes, 1 answer" in result.output
    tracks = tracks_of(out)
    call_end = max(tick for tick, _ in tracks["Call"]) + 240
    answered = [tick for name in ("Soprano", "Alto", "Tenor", "Bass") for tick, _ in tracks.get(name, [])]
    assert answered and min(answered) >= call_end  # after the call, never over it
    assert max(answered) - min(answered) < 4 * 480  # one 4/4 bar
    assert hanging_notes(all_messages(out)) == {}


@pytest.mark.parametrize("args, message", [
    (["harmonize", "{tmp}/none.mid", "-o", "{tmp}/x.mid"], "no such file"),
    (["harmonize", "{tmp}/melody.mid", "-o", "/proc/x.mid"], "cannot write --out /proc/x.mid"),
    (["harmonize", "{tmp}/melody.mid", "-o", "{tmp}/x.mid", "--channel", "5"], "no notes to play on channel 5"),
    (["continue", "{tmp}/melody.mid", "-o", "{tmp}/x.mid", "--track", "7"], "has tracks 0-0, not 7"),
])
def test_file_command_errors_are_one_line(args, message, tmp_path, tiny_model_path):
    from bachd.cli import app
    from typer.testing import CliRunner

    melody_file(tmp_path / "melody.mid")
    result = CliRunner().invoke(app, [a.format(tmp=tmp_path) for a in args] + ["--model", str(tiny_model_path)])
    assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output


def test_read_line_takes_the_top_line_of_chords():
    from bachd.files.replay import _top_line

    notes = [[0.0, 1.0, 60, 80], [0.0, 1.0, 67, 80], [0.5, 1.5, 64, 80], [1.0, 2.0, 72, 80]]
    assert [(s, e, p) for s, e, p, _ in _top_line(notes)] == [(0.0, 1.0, 67), (1.0, 2.0, 72)]


def test_harmonize_takes_the_bars_of_the_files_time_signature_and_an_upbeat_where_it_falls(tiny_model_path, tmp_path):
    from bachd.cli import app
    from typer.testing import CliRunner

    # A melody in 3/4 with an upbeat, written from beat 1 (as music21 writes a chorale's
    # MIDI): harmonized in 3/4, and with --pickup 1 its first note on beat 3 of a bar.
    source = melody_file(tmp_path / "waltz.mid", pitches=[67, 72, 71, 72, 74, 76, 74])
    mid = mido.MidiFile(source)
    mid.tracks[0].insert(0, mido.MetaMessage("time_signature", numerator=3, denominator=4, time=0))
    mid.save(source)

    def run(*extra) -> tuple[int, dict]:
        out = tmp_path / f"out{len(extra)}.mid"
        result = CliRunner().invoke(app, ["harmonize", str(source), "-o", str(out), "--model", str(tiny_model_path),
                                          *extra])
        assert result.exit_code == 0, result.output
        written = mido.MidiFile(out)
        signature = next(m for t in written.tracks for m in t if m.type == "time_signature")
        return signature.numerator, tracks_of(out)

    beats, tracks = run()
    assert beats == 3 and tracks["Melody"][0][0] == 0
    beats, tracks = run("--pickup", "1")
    assert beats == 3 and tracks["Melody"][0][0] == 2 * 480  # beat 3 of the first bar
    assert {tick for tick, _ in tracks["Melody"]} <= {tick for tick, _ in tracks["Bass"]}
    beats, tracks = run("--beats-per-bar", "4", "--pickup", "1")  # the command line over the file
    assert beats == 4 and tracks["Melody"][0][0] == 3 * 480
    result = CliRunner().invoke(app, ["harmonize", str(source), "-o", str(tmp_path / "x.mid"), "--pickup", "3",
                                      "--model", str(tiny_model_path)])
    assert result.exit_code != 0 and "less than a bar (3 beats)" in result.output
