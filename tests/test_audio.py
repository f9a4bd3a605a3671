"""The organ, WAV rendering, pictures, the live view and the audio monitor.

The monitor test plays through a real PortAudio stream on a JACK dummy server.
"""

import os
import threading
import time
import wave

import numpy as np
import pytest

from bachd.music import encoding as enc
from bachd.live.clock import InternalClock
from bachd.errors import BachdError
from bachd.live.view import LiveView, redraw
from bachd.sound.synth import ATTACK_SECONDS, RELEASE_SECONDS, Synth, midi_frequency, render_midi, write_wav

RATE = 48000


def spectrum_peak(audio: np.ndarray, rate: int = RATE) -> float:
    mono = audio.mean(axis=1) if audio.ndim == 2 else audio
    windowed = mono * np.hanning(len(mono))
    padded = np.fft.rfft(windowed, n=8 * len(mono))
    return float(np.argmax(np.abs(padded)) * rate / (8 * len(mono)))


@pytest.mark.parametrize("registration", range(5))
@pytest.mark.parametrize("pitch", [36, 57, 69, 84])
def test_a_note_sounds_at_its_pitch(pitch, registration):
    synth = Synth(RATE)
    synth.note_on("k", pitch, 100, registration)
    audio = synth.render(RATE // 2)[RATE // 10 :]  # past the attack
    expected = midi_frequency(pitch)
    assert abs(spectrum_peak(audio) - expected) < expected * 0.01  # within a sixth of a semitone


def test_sample_rate_limits_the_harmonics_so_high_notes_do_not_alias():
    synth = Synth(16000)
    synth.note_on("k", 96, 100, 0)  # C7, 2093 Hz: at 16 kHz only three partials fit
    audio = synth.render(8000)[2000:, 0]
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    frequencies = np.fft.rfftfreq(len(audio), 1 / 16000)
    strong = frequencies[spectrum > spectrum.max() * 0.01]
    harmonics = strong / midi_frequency(96)
    assert np.all(np.abs(harmonics - np.round(harmonics)) < 0.02)  # nothing but true partials


def max_step(audio: np.ndarray) -> float:
    return float(np.abs(np.diff(audio, axis=0)).max())


def test_no_click_where_notes_start_stop_or_replace_each_other():
    # Low notes move slowly from sample to sample, so any jump in an envelope (a click)
    # would stand far above the bound: the sum of each note's own largest steady step.
    def steady(pitch, registration):
        synth = Synth(RATE)
        synth.note_on("k", pitch, 127, registration)
        return max_step(synth.render(RATE // 4)[RATE // 8 :])

    bound = 2 * steady(24, 3) + steady(31, 0)  # two overlapping C1s (re-struck) and a G1
    synth = Synth(RATE)
    events = [
        (0, "on", ("a", 24, 127, 3)),
        (4000, "off", ("a",)), (4000, "on", ("a", 24, 127, 3)),  # re-struck on the same key
        (9000, "on", ("b", 31, 127, 0)),
        (9100, "off", ("b",)),  # released during its attack
        (12345, "on", ("c", 31, 127, 0)),
        (15000, "all_off", ()),  # cut everything at an arbitrary phase
    ]
    audio = synth.render_events(events, 15000 + int(RELEASE_SECONDS * RATE) + 1000)
    assert abs(audio[0]).max() == 0.0  # starts from silence
    assert np.abs(audio).max() > 20 * bound  # the bound is small against the signal
    assert max_step(audio) <= bound * 1.05
    tail = audio[15000 + int(RELEASE_SECONDS * RATE) + 10 :]
    assert np.abs(tail).max() == 0.0 and synth.active_notes == 0  # released notes end


def test_events_land_on_their_sample():
    synth = Synth(RATE)
    audio = synth.render_events([(1234, "on", ("k", 60, 100, 0))], 3000)
    nonzero = np.flatnonzero(np.abs(audio[:, 0]) > 0)
    assert nonzero[0] in (1234, 1235)  # the attack starts at zero on the event's sample
    assert int(ATTACK_SECONDS * RATE) > 100


def test_rendered_file_lasts_as_long_as_the_music_plus_the_release(tmp_path):
    from bachd.music.midifile import write_midi

    tokens = np.array([[enc.attack(72), enc.attack(67), enc.attack(64), enc.attack(48)]] * 1
                      + [[enc.hold(72), enc.hold(67), enc.hold(64), enc.hold(48)]] * 15, np.int64)
    midi = tmp_path / "bar.mid"
    write_midi(tokens, midi, bpm=120)  # 16 steps = 4 beats = 2.0 s at 120 bpm
    audio = render_midi(midi, 22050)
    assert audio.shape[1] == 2
    assert abs(len(audio) / 22050 - (2.0 + RELEASE_SECONDS + 0.05)) < 0.01
    loudest = np.abs(audio).max()
    assert 0.05 < loudest <= 1.0
    assert np.abs(audio[int(1.9 * 22050)]).max() > 0  # still sounding near the end
    assert np.abs(audio[-200:]).max() < 1e-6  # and silent after the release
    path = tmp_path / "bar.wav"
    write_wav(path, audio, 22050)
    with wave.open(str(path)) as handle:
        assert (handle.getnchannels(), handle.getframerate(), handle.getsampwidth()) == (2, 22050, 2)
        assert handle.getnframes() == len(audio)


def test_render_cli_writes_a_wav_and_reports_bad_input_on_one_line(tmp_path, tiny_model_path):
    from typer.testing import CliRunner

    from bachd.cli import app

    runner = CliRunner()
    midi = tmp_path / "g.mid"
    result = runner.invoke(app, ["generate", "-o", str(midi), "--model", str(tiny_model_path), "--bars", "1",
                                 "--rng-seed", "1", "--seed-file", str(_seed_midi(tmp_path)),
                                 "--wav", str(tmp_path / "g.wav"), "--plot", str(tmp_path / "g.png")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "g.wav").stat().st_size > 1000 and (tmp_path / "g.png").stat().st_size > 1000
    result = runner.invoke(app, ["render", str(midi), "-o", str(tmp_path / "r.wav"), "--sample-rate", "22050"])
    assert result.exit_code == 0, result.output
    with wave.open(str(tmp_path / "r.wav")) as handle:
        assert handle.getframerate() == 22050 and handle.getnframes() > 22050  # a 4/4 bar at 90 bpm is 2.7 s
    for args, message in [
        (["render", str(tmp_path / "missing.mid"), "-o", str(tmp_path / "x.wav")], "no such file"),
        (["render", str(tmp_path / "g.png"), "-o", str(tmp_path / "x.wav")], "not a readable MIDI file"),
        (["render", str(midi), "-o", str(tmp_path / "x.mp3")], "--out must name a .wav file"),
    ]:
        result = runner.invoke(app, args)
        assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output
        assert len(result.output.strip().splitlines()) == 1


def _seed_midi(tmp_path):
    from bachd.music.midifile import write_midi

    rows = []
    for pitch in (72, 74, 76, 74):  # a bar of quarter notes in four voices
        rows.append([enc.attack(pitch - offset) for offset in (0, 5, 12, 24)])
        rows += [[enc.hold(pitch - offset) for offset in (0, 5, 12, 24)]] * 3
    path = tmp_path / "seed.mid"
    write_midi(np.array(rows, np.int64), path)
    return path


def colour_pixels(image: np.ndarray, hex_colour: str) -> int:
    rgb = np.array([int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)]) / 255
    return int((np.abs(image[..., :3] - rgb).max(axis=-1) < 0.02).sum())


def test_piano_roll_shows_each_voice_in_its_colour_and_shades_the_seed(tmp_path):
    import matplotlib.image

    from bachd.sound.plots import SEED_SHADE, VOICE_COLOURS, piano_roll

    steps = 64
    tokens = np.full((steps, 4), enc.REST, np.int64)
    for step in range(0, steps, 4):
        for voice, pitch in enumerate((72, 67, 60, 48)):
            tokens[step, voice] = enc.attack(pitch + (step // 4) % 3)
            tokens[step + 1 : step + 4, voice] = enc.hold(pitch + (step // 4) % 3)
    path = tmp_path / "roll.png"
    drawn = piano_roll(tokens, path, seed_steps=16, title="test")
    assert drawn == 4 * steps // 4
    image = matplotlib.image.imread(str(path))
    for colour in VOICE_COLOURS:
        assert colour_pixels(image, colour) > 200
    assert colour_pixels(image, SEED_SHADE) > 1000  # the shaded seed
    plain = tmp_path / "plain.png"
    piano_roll(tokens, plain)
    assert colour_pixels(matplotlib.image.imread(str(plain)), SEED_SHADE) == 0


def test_eval_chart_draws_each_voice(tmp_path):
    import matplotlib.image

    from bachd.sound.plots import VOICE_COLOURS, eval_chart

    figures = {"pitch_nll": 0.5, "accuracy": 0.8,
               "per_voice": {v: {"pitch_nll": 0.3 + 0.1 * i, "accuracy": 0.9 - 0.05 * i} for i, v in enumerate(enc.VOICES)}}
    eval_chart(figures, tmp_path / "eval.png", title="t")
    image = matplotlib.image.imread(str(tmp_path / "eval.png"))
    for colour in VOICE_COLOURS:
        assert colour_pixels(image, colour) > 500


def test_live_view_rolls_what_comes_in_and_goes_out():
    clock = InternalClock(120.0, origin_seconds=0.0)  # a 16th is 0.125 s
    view = LiveView(clock, beats_per_bar=4, rows=6)
    view.played(clock.step_time(2), 72, on=True)
    view.sent(clock.step_time(2), 1, enc.attack(67))
    view.sent(clock.step_time(2), 3, enc.attack(48))
    view.sent(clock.step_time(4), 1, enc.REST)
    view.played(clock.step_time(5), 72, on=False)
    lines = view.panel(clock.step_time(5) + 0.01, "header")
    assert lines[0] == "header" and "soprano" in lines[1]
    rows = {line.split()[0]: line.split() for line in lines[2:]}
    assert rows["1.1.3"][1:] == ["C5", ".", "G4", ".", "C3"]  # step 2: in C5; alto G4, bass C3 struck
    assert rows["1.1.4"][1:] == ["|", ".", "|", ".", "|"]  # held
    assert rows["1.2.1"][1:] == ["|", ".", ".", ".", "|"]  # the alto was released
    assert rows["1.2.2"][1] == "."  # the player let go at step 5
    text = redraw(len(lines), lines)
    assert text.startswith("\x1b[7F") and text.count("\n") == len(lines) - 1
    # The same notes as data for the control surface's piano roll: [part, pitch, start, end].
    view.sent(clock.step_time(6), 0, enc.attack(74))
    view.sent(clock.step_time(7), 0, enc.attack(74))  # struck again: a new note
    roll = view.roll(clock.step_time(8) + 0.01, steps=8)
    assert roll["present"] == 8 and roll["first"] == 1
    assert sorted(roll["notes"]) == sorted([[0, 72, 2, 5], [2, 67, 2, 4], [4, 48, 2, None], [1, 74, 6, 7], [1, 74, 7, None]])
    assert sorted(view.roll(clock.step_time(40), steps=8)["notes"]) == [[1, 74, 33, None], [4, 48, 33, None]]  # what still sounds


# --- sounddevice and PortAudio ------------------------------------------------------------------
def test_without_portaudio_the_monitor_says_what_to_install(monkeypatch, tmp_path, tiny_model_path):
    import sys

    from typer.testing import CliRunner

    from bachd.sound.audio import import_sounddevice
    from bachd.cli import app

    monkeypatch.setitem(sys.modules, "sounddevice", None)  # import fails as without the library
    with pytest.raises(BachdError, match="libportaudio2"):
        import_sounddevice()
    result = CliRunner().invoke(app, ["run", "--monitor", "--model", str(tiny_model_path)])
    assert result.exit_code == 1 and "libportaudio2" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(app, ["render", str(tmp_path / "none.mid"), "-o", str(tmp_path / "x.wav")])
    assert "PortAudio" not in result.output  # everything else works without it


@pytest.fixture(scope="module")
def jack_audio():
    from jackprobe import JackServer, JackUnavailable

    try:
        with JackServer(period=256) as server:
            yield server
            import sounddevice

            sounddevice._terminate()  # PortAudio's JACK client must go before the server does
    except JackUnavailable as error:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI needs a JACK server for the audio test: {error}")
        pytest.skip(str(error))


@pytest.mark.slow
def test_monitor_plays_a_phrase_through_a_real_portaudio_stream(jack_audio):
    from bachd.sound.audio import Monitor, output_devices, resolve_device

    devices = output_devices()
    assert any(d["hostapi"].startswith("JACK") for d in devices), devices
    monitor = Monitor(device=resolve_device(None))
    stop, ready = threading.Event(), threading.Event()
    errors = []

    def play():
        try:
            monitor.run(stop, ready)
        except BaseException as error:  # noqa: BLE001
            errors.append(error)
            ready.set()

    thread = threading.Thread(target=play)
    thread.start()
    assert ready.wait(10) and not errors, errors
    for pitch in (72, 74, 76, 77):
        t = time.monotonic()
        for channel, offset in enumerate((0, -5, -12, -24)):
            monitor.feed(t, [0x90 | channel, pitch + offset, 90])
        time.sleep(0.15)
        t = time.monotonic()
        for channel, offset in enumerate((0, -5, -12, -24)):
            monitor.feed(t, [0x80 | channel, pitch + offset, 0])
    time.sleep(0.2)
    stop.set()
    thread.join(5)
    assert not thread.is_alive() and not errors, errors
    stats = monitor.stats
    assert stats.device and stats.output_latency_seconds > 0
    played = stats.blocks * monitor.block_frames / monitor.synth.sample_rate
    assert played > 0.6  # the stream took audio for the whole phrase, at the device's pace
    assert stats.late_events == 0
    assert monitor.synth.active_notes == 0  # every note was released and faded out
    assert stats.underruns <= 2
