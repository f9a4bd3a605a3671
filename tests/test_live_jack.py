"""End to end through a real JACK server (dummy driver): ``bachd run`` as a subprocess,
played from a separate JACK MIDI client, heard on another. No mocks.

When jackd is absent these tests skip on a developer machine and fail when CI=true.
"""

import os
import signal
import subprocess
import sys
import time

import pytest

from jackprobe import Bachd, JackServer, JackUnavailable, MidiProbe, is_note_on, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def play(jack):
    started = []

    def start(*args):
        bachd = Bachd(jack, *args)
        probe = MidiProbe()
        probe.settle()
        started.append((bachd, probe))
        return bachd, probe

    yield start
    for bachd, probe in started:
        bachd.kill()
        probe.close()


def messages(probe):
    return [r.message for r in probe.received]


def _assert_harmonized_under(probe, pitch: int, timeout: float, held: float, gap: float) -> None:
    """Play a melody note: alto, tenor and bass (channels 2-4) strike under it (or double it)
    within ``timeout``; then hold it ``held`` seconds and rest ``gap``."""
    since = len(probe.received)
    sent = probe.send(0x90, pitch, 90)
    hits = probe.wait_for(is_note_on, count=3, since=since, timeout=timeout)
    heard = [(round(h.t_seconds - sent, 4), h.message) for h in hits]
    assert sorted(h.message[0] & 0x0F for h in hits[:3]) == [1, 2, 3], (pitch, heard)
    assert all(h.message[1] <= pitch for h in hits[:3]), (pitch, heard)
    probe.hold(held)
    probe.send(0x80, pitch, 0)
    probe.hold(gap)


def test_harmonize_answers_every_melody_note_with_lower_voices(play):
    bachd, probe = play("--mode", "harmonize", "--bpm", "100", "--rng-seed", "5")
    assert "harmonize mode" in bachd.ready_line and "bachd-in" in bachd.ready_line
    for pitch in [72, 74, 76, 74, 72, 71, 72]:
        _assert_harmonized_under(probe, pitch, timeout=1.0, held=0.15, gap=0.05)
    code, _, err = bachd.stop()
    assert code == 0, err
    assert not (hanging := probe.quiet()), probe.story(hanging)


def test_the_harmonizer_preset_harmonizes_a_keyboard_with_no_daw(play):
    """The README's second live line, tried with a keyboard alone: no MIDI clock, no Start."""
    bachd, probe = play("--preset", "harmonizer", "--rng-seed", "5")
    assert "on the internal clock until MIDI clock comes" in bachd.ready_line, bachd.ready_line
    for pitch in [72, 74, 76]:
        _assert_harmonized_under(probe, pitch, timeout=1.0, held=0.2, gap=0.05)
    code, _, err = bachd.stop()
    assert code == 0, err
    assert not (hanging := probe.quiet()), probe.story(hanging)


def test_notes_while_the_transport_is_stopped_are_said_once(play):
    bachd, probe = play("--mode", "harmonize", "--clock", "midi")
    for pitch in (72, 74, 76):
        probe.send(0x90, pitch, 90)
        probe.hold(0.15)
        probe.send(0x80, pitch, 0)
    assert probe.nothing(0.6) == []  # not played over: the DAW has not sent Start
    code, _, err = bachd.stop()
    assert code == 0, err
    said = [line for line in err.splitlines() if "notes are coming in" in line]
    assert len(said) == 1 and "the midi clock's transport is stopped" in said[0] and "--clock auto" in said[0]


def test_continue_answers_after_the_gap_for_the_asked_length(play):
    bachd, probe = play("--mode", "continue", "--bpm", "120", "--response-bars", "1", "--listen-gap", "0.5",
                        "--rng-seed", "2", "--start-on", "beat")
    for pitch in [67, 71, 74, 72]:
        probe.send(0x90, pitch, 90)
        probe.hold(0.2)
        probe.send(0x80, pitch, 0)
    hits = probe.wait_for(is_note_on, timeout=3.0)
    assert hits, "no answer"
    probe.answer_over(0)  # the one-bar answer is over: every note it struck is released
    assert not (hanging := probe.quiet()), probe.story(hanging)
    assert probe.nothing(1.0, predicate=lambda m: True) == []  # and it answered once: nothing more comes
    code, _, err = bachd.stop()
    assert code == 0 and "1 answers" in err


def test_midi_clock_drives_the_tempo_and_stop_silences(play):
    bachd, probe = play("--mode", "continue", "--clock", "midi", "--response-bars", "4", "--listen-gap", "0.5", "--rng-seed", "4")
    bpm = 150
    period = 60 / (bpm * 24)
    probe.send(0xFA)  # Start
    next_tick = time.monotonic()

    def ticks_until(deadline):
        nonlocal next_tick
        while next_tick < deadline:
            delay = next_tick - time.monotonic()
            if delay > 0:
                probe.hold(delay)  # the DAW's clock: a tick every period
            probe.send(0xF8)
            next_tick += period

    ticks_until(time.monotonic() + 0.5)
    probe.send(0x90, 72, 90)
    ticks_until(time.monotonic() + 0.3)
    probe.send(0x80, 72, 0)
    probe.send(0xB0, 24, 127)  # end of call
    ticks_until(time.monotonic() + 1.6)
    ons = [r for r in probe.received if is_note_on(r.message)]
    assert ons, "no answer on MIDI clock"
    # Answer notes land on the DAW's grid: 16ths at 150 bpm are 100 ms apart.
    starts = sorted({round((r.t_seconds - ons[0].t_seconds) / 0.1, 1) for r in ons})
    assert all(abs(s - round(s)) <= 0.25 for s in starts), starts
    probe.send(0xFC)  # Stop
    assert not (hanging := probe.quiet()), probe.story(hanging)
    count = len(probe.received)
    ticks_until(time.monotonic() + 0.5)
    assert not [r for r in probe.received[count:] if is_note_on(r.message)]  # silent while stopped
    code, _, _ = bachd.stop()
    assert code == 0


def test_sigterm_during_an_answer_leaves_no_note_hanging(play):
    bachd, probe = play("--mode", "continue", "--bpm", "120", "--response-bars", "8", "--listen-gap", "0.5")
    probe.send(0x90, 72, 90)
    probe.hold(0.2)
    probe.send(0x80, 72, 0)
    assert probe.wait_for(is_note_on, timeout=3.0)
    probe.wait_for(is_note_on, count=8, timeout=2.0)  # well into the eight-bar answer
    started = time.monotonic()
    code, _, err = bachd.stop(signal.SIGTERM)
    assert code == 0, err
    assert time.monotonic() - started < 5
    assert sum(is_note_on(m) for m in messages(probe)) > 1
    assert not (hanging := probe.quiet()), probe.story(hanging)


def test_bad_input_leaves_the_daemon_answering(play):
    bachd, probe = play("--mode", "harmonize", "--bpm", "100")
    probe.send(0xF0, 0x7E, 0x7F, 0x06, 0x01, 0xF7)  # SysEx
    probe.send(0x80, 50, 0)  # note-off with no note-on
    probe.send(0x93, 127, 127)  # far out of range: folded
    probe.send(0x83, 127, 0)
    for k in range(2000):  # a storm
        probe.send(0x90, 30 + k % 60, 100)
    for k in range(60):
        probe.send(0x80, 30 + k, 0)
    for _ in range(200):  # absurd clock ticks on the internal clock: ignored
        probe.send(0xF8)
    probe.answer_over(0, quiet_seconds=1.0)  # whatever bachd made of it is over
    since = len(probe.received)
    probe.send(0x90, 74, 90)
    assert len(probe.wait_for(is_note_on, count=3, since=since, timeout=1.0)) >= 3
    probe.hold(0.2)
    probe.send(0x80, 74, 0)
    code, _, err = bachd.stop()
    assert code == 0, err
    assert not (hanging := probe.quiet()), probe.story(hanging)


def test_busy_or_absent_port_names_and_missing_model_are_clear_errors(jack, tmp_path):
    env = jack.env()
    cmd = [sys.executable, "-m", "bachd", "run", "--backend", "jack"]
    missing = subprocess.run(cmd + ["--model", str(tmp_path / "none.keras")], env=env, capture_output=True, text=True, timeout=60)
    assert missing.returncode == 1 and missing.stderr.strip().startswith("error: model ") and "does not exist" in missing.stderr
    assert "Traceback" not in missing.stderr
    # A "client:port" name means an existing port: one that is not there is an error that
    # lists the ports that are, never a virtual port called "nosuch:port:nosuch:port".
    absent = subprocess.run(cmd + ["--in", "nosuch:port"], env=env, capture_output=True, text=True, timeout=60)
    assert absent.returncode == 1 and "Traceback" not in absent.stderr
    assert absent.stderr.strip().splitlines() == [absent.stderr.strip()]
    assert absent.stderr.startswith("error: no MIDI input port named 'nosuch:port' (ports: ")
    first = Bachd(jack, "--mode", "harmonize")
    try:
        busy = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
        assert busy.returncode == 1 and "already exists" in busy.stderr and "Traceback" not in busy.stderr
    finally:
        first.kill()


def test_monitor_plays_through_portaudio_while_harmony_stays_on_time(play, tmp_path):
    import json

    stats_path = tmp_path / "stats.json"
    bachd, probe = play("--mode", "harmonize", "--bpm", "100", "--rng-seed", "5", "--monitor", "--monitor-input",
                        "--stats-json", str(stats_path))
    from bachd.sound.soundfont import resolve_sound

    font = resolve_sound(None)  # a General MIDI SoundFont where one is installed (CI installs one), else the organ
    assert (f"Monitor: the SoundFont {font}." if font else "Monitor: the built-in organ.") in bachd.ready_line
    for pitch in [72, 74, 76, 74, 72]:
        since = len(probe.received)
        probe.send(0x90, pitch, 90)
        assert len(probe.wait_for(is_note_on, count=3, since=since, timeout=1.0)) >= 3
        probe.hold(0.15)
        probe.send(0x80, pitch, 0)
        probe.hold(0.05)
    probe.answer_over(0, quiet_seconds=0.3)  # the harmony of the last note released, then a moment of audio
    code, _, err = bachd.stop()
    assert code == 0, err
    assert not (hanging := probe.quiet()), probe.story(hanging)
    audio = json.loads(stats_path.read_text())["audio"]
    assert audio["error"] is None and audio["device"]
    seconds = audio["blocks"] * audio["block_frames"] / audio["sample_rate"]
    assert seconds > 1.0  # audio flowed for the whole run
    assert audio["output_latency_seconds"] > 0


# --- what a DAW does to bachd --------------------------------------------------------------------
class Daw:
    """The probe as a DAW: MIDI clock at ``bpm`` while its transport runs, notes in between
    ticks (one sending thread, as a DAW's MIDI port is)."""

    def __init__(self, probe, bpm: float = 120.0):
        self.probe, self.period = probe, 60 / (bpm * 24)
        self.running = False
        self.next_tick = time.monotonic()

    def play_for(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.running and time.monotonic() >= self.next_tick:
                self.probe.send(0xF8)
                self.next_tick += self.period
            self.probe.hold(0.0005)  # the DAW's clock: a tick every period

    def transport(self, status: int) -> None:
        self.probe.send(status)
        if status in (0xFA, 0xFB):
            self.running, self.next_tick = True, time.monotonic()
        elif status == 0xFC:
            self.running = False

    def note(self, pitch: int, seconds: float, channel: int = 0) -> int:
        """Play a note; the index of the first message received after its note-on."""
        since = len(self.probe.received)
        self.probe.send(0x90 | channel, pitch, 90)
        self.play_for(seconds)
        self.probe.send(0x80 | channel, pitch, 0)
        return since


CHORD_SECONDS = 0.02  # a chord's note-ons arrive together; the next step is a 16th (>= 50 ms) later


def harmony_heard(probe, since: int, timeout: float = 1.0) -> list[int]:
    """The channels of the chord heard after index ``since``: every note-on within
    CHORD_SECONDS of the first. A step bachd scheduled under the melody note before may go
    out in the very moment the new note arrives, and its note-ons come just ahead of the
    new chord's; counting the first three note-ons alone made this a coin toss."""
    hits = probe.wait_for(is_note_on, count=3, since=since, timeout=timeout)
    if not hits:
        return []
    # Every note-on that arrives within CHORD_SECONDS of the first: waited for until then.
    probe.wait_for(lambda m: False, since=since, timeout=max(0.0, hits[0].t_seconds + CHORD_SECONDS - time.monotonic()))
    hits = probe.wait_for(is_note_on, count=1, since=since, timeout=0.0)
    return sorted({h.message[0] & 0x0F for h in hits if h.t_seconds <= hits[0].t_seconds + CHORD_SECONDS})


def test_stop_then_start_releases_everything_and_harmonizes_the_first_note(play):
    bachd, probe = play("--mode", "harmonize", "--clock", "midi", "--rng-seed", "5")
    daw = Daw(probe)
    daw.transport(0xFA)
    daw.play_for(0.3)
    for pitch in (72, 74, 76, 77, 79):
        assert harmony_heard(probe, daw.note(pitch, 0.3)) == [1, 2, 3]
    probe.send(0x90, 77, 90)  # held over the Stop
    daw.play_for(0.2)
    daw.transport(0xFC)
    assert not (hanging := probe.quiet()), probe.story(hanging)
    daw.play_for(0.5)
    probe.send(0x80, 77, 0)
    daw.transport(0xFA)  # from the top
    assert harmony_heard(probe, daw.note(72, 0.3)) == [1, 2, 3]  # the very first note after Start
    assert harmony_heard(probe, daw.note(74, 0.3)) == [1, 2, 3]
    daw.transport(0xFC)
    assert not (hanging := probe.quiet()), probe.story(hanging)
    code, _, err = bachd.stop()
    assert code == 0, err


def test_start_while_running_silences_and_no_answer_comes_unasked(play, tmp_path):
    stats = tmp_path / "stats.json"
    bachd, probe = play("--mode", "continue", "--clock", "midi", "--response-bars", "4", "--listen-gap", "0.5",
                        "--stats-json", str(stats))
    daw = Daw(probe)
    daw.transport(0xFA)
    daw.play_for(0.2)
    daw.note(72, 0.3)
    probe.send(0xB0, 24, 127)  # end of call
    daw.play_for(1.0)
    assert probe.wait_for(is_note_on, timeout=0.5), "no answer"
    daw.transport(0xFA)  # the DAW jumps back to the top while playing
    assert not (hanging := probe.quiet()), probe.story(hanging)
    count = len(probe.received)
    daw.play_for(3.0)
    assert not [r for r in probe.received[count:] if is_note_on(r.message)]
    code, _, err = bachd.stop()
    assert code == 0, err
    import json

    figures = json.loads(stats.read_text())
    assert figures["transport"]["starts"] == 2 and figures["answers"] == 1


def test_a_drum_note_left_on_never_keeps_continue_from_answering(play):
    bachd, probe = play("--mode", "continue", "--bpm", "120", "--response-bars", "1", "--listen-gap", "0.5")
    probe.send(0x99, 36, 100)  # a kick on channel 10 whose note-off never comes
    probe.hold(0.2)
    for pitch in (67, 71, 74):
        probe.send(0x90, pitch, 90)
        probe.hold(0.15)
        probe.send(0x80, pitch, 0)
    assert probe.wait_for(is_note_on, timeout=3.0), "continue never answered"
    code, _, err = bachd.stop()
    assert code == 0, err
    assert not (hanging := probe.quiet()), probe.story(hanging)


@pytest.mark.parametrize("mode", ["continue", "harmonize"])
def test_an_unterminated_sysex_does_not_leave_bachd_deaf(play, mode):
    bachd, probe = play("--mode", mode, "--bpm", "120", "--response-bars", "1", "--listen-gap", "0.5")
    probe.send(0xF0, 0x43, 0x12, 0x00, 0x01, 0x02)  # a dump cut off: no F7 ever comes
    probe.hold(0.3)
    since = len(probe.received)
    for pitch in (67, 71, 74):
        probe.send(0x90, pitch, 90)
        probe.hold(0.15)
        probe.send(0x80, pitch, 0)
    heard = probe.wait_for(is_note_on, count=3, since=since, timeout=3.0)
    assert len(heard) >= 3, f"deaf after a broken SysEx in {mode} mode"
    code, _, err = bachd.stop()
    assert code == 0, err
    assert not (hanging := probe.quiet()), probe.story(hanging)


def test_a_flood_is_counted_not_printed_and_bachd_plays_on(play, tmp_path):
    import json

    stats = tmp_path / "stats.json"
    bachd, probe = play("--mode", "harmonize", "--bpm", "120", "--stats-json", str(stats))
    for k in range(400_000):  # far past rtmidi's input queue
        probe.out.send_message([0x90 | (k % 2), 40 + k % 40, 100 if k % 4 < 2 else 0])
    probe.hold(2.0)  # the sender pauses, then lets go of every key
    for k in range(40):
        probe.send(0x80, 40 + k, 0)
        probe.send(0x81, 40 + k, 0)
    probe.answer_over(0, timeout=3.0)  # what bachd played over the flood is released
    since = len(probe.received)
    probe.send(0x90, 74, 90)
    assert len(probe.wait_for(is_note_on, count=3, since=since, timeout=2.0)) >= 3  # still harmonizing
    probe.send(0x80, 74, 0)
    code, _, err = bachd.stop()
    assert code == 0, err
    figures = json.loads(stats.read_text())
    assert figures["dropped_messages"] > 0
    assert "queue limit" not in err
    warnings = [line for line in err.splitlines() if "input flood" in line]
    assert 1 <= len(warnings) <= 4  # at most one a second over the flood
    assert f"({figures['dropped_messages']:,} since start)" in warnings[-1]


def _flood(probe, messages: int) -> None:
    for k in range(messages):  # note-ons and -offs in turn, far past rtmidi's input queue
        probe.out.send_message([0x90 | (k % 2), 40 + k % 40, 100 if k % 4 < 2 else 0])


def test_after_a_flood_the_next_clean_call_gets_a_full_answer_without_any_cc(play, tmp_path):
    import json

    stats = tmp_path / "stats.json"
    bachd, probe = play("--mode", "continue", "--bpm", "120", "--response-bars", "1", "--listen-gap", "0.5",
                        "--start-on", "beat", "--stats-json", str(stats))
    _flood(probe, 400_000)  # what bachd held of it has lost its note-offs: no note-off follows
    probe.hold(2.0)  # the player's pause after the flood
    since = len(probe.received)
    for pitch in (67, 71, 74, 72):
        probe.send(0x90, pitch, 90)
        probe.hold(0.2)
        probe.send(0x80, pitch, 0)
    assert probe.wait_for(is_note_on, since=since, timeout=3.0), "no answer to a clean call after the flood"
    probe.answer_over(since)  # the one-bar answer at 120 bpm
    answer = [r for r in probe.received[since:] if len(r.message) == 3 and r.message[0] & 0xE0 == 0x80]
    ons = [r for r in answer if is_note_on(r.message)]
    assert len(ons) >= 4 and len({r.message[0] & 0x0F for r in ons}) >= 3, answer
    assert answer[-1].t_seconds - ons[0].t_seconds >= 1.5  # the whole bar, not a single note
    code, _, err = bachd.stop()
    assert code == 0, err
    assert not (hanging := probe.quiet()), probe.story(hanging)
    figures = json.loads(stats.read_text())
    assert figures["dropped_messages"] > 0 and figures["input_resets"] >= 1
    assert figures["answers"] == 1 and figures["panics"] == 0


def test_after_a_storm_with_lost_note_offs_clean_melody_notes_are_harmonized_at_once(play, tmp_path):
    import json
    import random

    stats = tmp_path / "stats.json"
    bachd, probe = play("--mode", "harmonize", "--bpm", "120", "--stats-json", str(stats))
    rng = random.Random(1)
    end = time.monotonic() + 2.0
    while time.monotonic() < end:  # note pairs across the keyboard, about 800 note-ons a second
        for _ in range(8):
            pitch = rng.randrange(36, 97)
            probe.out.send_message([0x90, pitch, 90])
            if rng.random() > 0.05:  # one note-off in twenty lost
                probe.out.send_message([0x80, pitch, 0])
        probe.hold(0.01)
    probe.hold(2.0)  # the player's pause after the storm
    for pitch in (67, 69, 71, 72, 71, 69):  # clean melody notes, a beat apart
        _assert_harmonized_under(probe, pitch, timeout=0.4, held=0.4, gap=0.1)
    code, _, err = bachd.stop()
    assert code == 0, err
    assert not (hanging := probe.quiet()), probe.story(hanging)
    figures = json.loads(stats.read_text())
    assert figures["input_resets"] >= 1 and figures["panics"] == 0


def _own_server(name: str) -> tuple[JackServer, str | None]:
    """A JACK server of the test's own, which it may kill (a fixed name, so that its slot in
    JACK's registry is reclaimed by the next run), and the module's server to go back to."""
    shared_server = os.environ.get("JACK_DEFAULT_SERVER")
    try:
        return JackServer(period=64, name=name).__enter__(), shared_server
    except JackUnavailable as error:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI needs a JACK server for the end-to-end tests: {error}")
        pytest.skip(str(error))


def test_the_jack_server_going_away_stops_bachd_with_one_line():
    server, shared_server = _own_server("bachd-test-killed")
    bachd = Bachd(server, "--mode", "harmonize")
    try:
        server.process.kill()
        server.process.wait()
        code, out, err = bachd.stop(sig=0, timeout=3.0)  # no signal: it must stop by itself
    finally:
        bachd.kill()
        server.__exit__()
        if shared_server:
            os.environ["JACK_DEFAULT_SERVER"] = shared_server
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: the JACK server went away; bachd released its notes and stopped."), err


def _recorded_notes(track) -> list[tuple[int, str, int, int]]:
    at, found = 0, []
    for message in track:
        at += message.time
        if message.type in ("note_on", "note_off"):
            found.append((at, "on" if message.type == "note_on" and message.velocity else "off", message.channel, message.note))
    return found


def _paired(found) -> bool:
    sounding = {}
    for _, kind, channel, pitch in found:
        key = (channel, pitch)
        if kind == "on":
            if sounding.get(key):
                return False
            sounding[key] = True
        elif not sounding.pop(key, False):
            return False
    return not sounding


@pytest.mark.parametrize("ending", ["sigterm", "jack_killed"])
def test_a_recorded_session_keeps_every_note_and_is_finished_however_bachd_ends(ending, tmp_path):
    import mido

    server, shared_server = _own_server("bachd-test-record")
    path = tmp_path / "session.mid"
    bachd = probe = None
    try:
        bachd = Bachd(server, "--mode", "continue", "--bpm", "120", "--response-bars", "2", "--listen-gap", "0.5",
                      "--start-on", "beat", "--record", str(path))
        assert f"Recording to {path}" in bachd.ready_line
        probe = MidiProbe()
        probe.settle()
        call = (67, 71, 74, 72)
        for pitch in call:
            probe.send(0x90, pitch, 90)
            probe.hold(0.2)
            probe.send(0x80, pitch, 0)
        assert probe.wait_for(is_note_on, timeout=3.0), "no answer"

        def call_recorded() -> bool:  # written at least once a bar: readable at any moment
            return [n[3] for n in _recorded_notes(mido.MidiFile(path).tracks[1]) if n[1] == "on"] == list(call)

        assert wait_until(call_recorded, timeout=3.0), "the call is not in the recording while bachd answers"
        assert probe.wait_for(is_note_on, count=2, timeout=3.0)  # still answering
        probe.send(0x90, 60, 90)  # a key still down when bachd ends
        probe.hold(0.1)
        if ending == "sigterm":
            code, _, err = bachd.stop()
            assert code == 0, err
        else:
            server.process.kill()
            server.process.wait()
            code, _, err = bachd.stop(sig=0, timeout=5.0)
            assert code == 1 and "JACK server went away" in err, err
        assert f"the session is recorded in {path}" in err
    finally:
        if probe is not None:
            probe.close()
        if bachd is not None:
            bachd.kill()
        server.__exit__()
        if shared_server:
            os.environ["JACK_DEFAULT_SERVER"] = shared_server
    midi = mido.MidiFile(path)
    assert [t.name for t in midi.tracks] == ["bachd", "player", "soprano", "alto", "tenor", "bass"]
    player = _recorded_notes(midi.tracks[1])
    assert [n[3] for n in player if n[1] == "on"] == [*call, 60] and _paired(player)
    voices = [_recorded_notes(track) for track in midi.tracks[2:]]
    assert sum(1 for found in voices for n in found if n[1] == "on") >= 4
    for channel, found in enumerate(voices):
        assert _paired(found) and all(n[2] == channel for n in found)
    answer_notes = [n[0] for found in voices for n in found if n[1] == "on"]
    last_call_off = max(n[0] for n in player if n[3] == 72 and n[1] == "off")
    assert min(answer_notes) > last_call_off  # the answer comes after the call, in file time too
    markers, at = [], 0
    for message in midi.tracks[0]:
        at += message.time
        if message.type == "marker":
            markers.append((at, message.text))
    assert [text for _, text in markers] == ["answer 1"] and abs(markers[0][0] - min(answer_notes)) <= 24
    assert any(m.type == "set_tempo" and round(mido.tempo2bpm(m.tempo)) == 120 for m in midi.tracks[0])


def test_a_keyboard_unplugged_from_under_bachd_stops_it_with_one_line(jack):
    import rtmidi

    keyboard = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="keyboard")
    keyboard.open_virtual_port("keys")
    bachd = Bachd(jack, "--mode", "harmonize", "--in", "keyboard", "--out", "bachd-out-kb")
    try:
        assert "connected to keyboard:keys" in bachd.ready_line
        keyboard.close_port()
        keyboard.delete()  # the keyboard goes away
        code, _, err = bachd.stop(sig=0, timeout=5.0)
    finally:
        bachd.kill()
    assert code == 1
    assert err.strip().splitlines() == [err.strip()]
    assert err.startswith("error: the MIDI input port 'keyboard:keys' went away; bachd released its notes")


class LinkPeer:
    """The test's own Ableton Link peer (start/stop sync on), as a DAW in the room would be."""

    def __init__(self, bpm: float):
        import link

        self.link = link.Link(bpm)
        self.link.startStopSyncEnabled = True
        self.link.enabled = True

    def set(self, bpm: float | None = None, playing: bool | None = None) -> None:
        state = self.link.captureAppSessionState()
        if bpm is not None:
            state.setTempo(bpm, self.link.clock().micros())
        if playing is not None:
            state.setIsPlaying(playing, self.link.clock().micros())
        self.link.commitAppSessionState(state)

    def step_at(self, t_monotonic: float) -> float:
        """The session's 16th step at a time.monotonic() moment."""
        offset = self.link.clock().micros() / 1e6 - time.monotonic()
        state = self.link.captureAppSessionState()
        return 4 * state.beatAtTime(int((t_monotonic + offset) * 1e6), 4.0)

    def close(self) -> None:
        self.link.enabled = False


def _call(probe, pitches=(67, 71, 74, 72)) -> int:
    since = len(probe.received)
    for pitch in pitches:
        probe.send(0x90, pitch, 90)
        probe.hold(0.15)
        probe.send(0x80, pitch, 0)
    return since


def test_link_clock_follows_a_peers_tempo_phase_and_start_stop(play, tmp_path):
    import json

    peer = LinkPeer(100.0)
    try:
        stats = tmp_path / "stats.json"
        bachd, probe = play("--clock", "link", "--bpm", "140", "--mode", "continue", "--response-bars", "1",
                            "--listen-gap", "0.5", "--start-on", "beat", "--stats-json", str(stats))
        # The session's tempo, once it has reached bachd (Link takes a moment after finding a peer).
        assert "Ableton Link session with 1 peer, " in bachd.ready_line, bachd.ready_line
        assert "140 bpm" not in bachd.ready_line, bachd.ready_line
        silent_from = len(probe.received)
        _call(probe)  # the session is not playing: bachd waits for its start, as for MIDI Start
        assert probe.nothing(1.5, since=silent_from) == []
        peer.set(playing=True)
        probe.hold(0.3)  # the session plays a moment before the next call

        def answer_steps(since: int) -> list[float]:
            assert probe.wait_for(is_note_on, since=since, timeout=4.0), "no answer"
            probe.answer_over(since)
            return [peer.step_at(r.t_seconds) for r in probe.received[since:] if is_note_on(r.message)]

        steps = answer_steps(_call(probe))  # at the peer's 100 bpm, on its 16th grid
        assert len(steps) >= 4 and all(abs(s - round(s)) < 0.06 for s in steps), steps
        assert round(steps[0]) % 4 == 0  # an answer starting on the beat: the peer's beat

        peer.set(bpm=130.0)  # a tempo change made in the session
        probe.hold(0.5)  # ... half a second before the next call
        steps = answer_steps(_call(probe))
        assert len(steps) >= 4 and all(abs(s - round(s)) < 0.06 for s in steps), steps
        gaps = sorted(b - a for a, b in zip(steps, steps[1:]) if b - a > 0.5)
        assert gaps and all(abs(g - round(g)) < 0.1 for g in gaps)  # spaced in the new tempo's 16ths

        since = _call(probe)  # Link's stop acts as MIDI Stop: in the middle of the answer,
        assert probe.wait_for(is_note_on, since=since, timeout=4.0), "no answer"
        peer.set(playing=False)  # everything is released and no answer comes while stopped
        probe.answer_over(since, quiet_seconds=0.3, timeout=3.0)
        assert not (hanging := probe.quiet()), probe.story(hanging)
        silent_from = len(probe.received)
        _call(probe)
        assert probe.nothing(2.0, since=silent_from) == []
        peer.set(playing=True)  # and its start as MIDI Start: the next call is answered
        probe.hold(0.3)  # the session plays a moment before the next call
        since = _call(probe)
        assert probe.wait_for(is_note_on, since=since, timeout=4.0), "no answer after Link start"
        probe.answer_over(since)
        code, _, err = bachd.stop()
        assert code == 0, err
        figures = json.loads(stats.read_text())
        assert figures["clock_detail"] == "Link: 1 peer" and abs(figures["bpm"] - 130.0) < 0.01
        assert figures["transport"]["stops"] >= 1 and figures["transport"]["starts"] >= 2
    finally:
        peer.close()
