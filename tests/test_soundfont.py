"""SoundFont sound through FluidSynth: a General MIDI font from the Debian packages
(``timgm6mb-soundfont``, or ``fluid-soundfont-gm``) renders the right pitches, sounds unlike the
built-in organ, is found by itself, and a bad file is one line. These tests skip when neither
the font nor the FluidSynth library is installed, except with CI=true, where they fail."""

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from bachd.cli import app
from bachd.errors import BachdError
from bachd.sound import soundfont as sf
from bachd.sound.synth import Synth, midi_frequency

RATE = 48000
FONTS = [Path("/usr/share/sounds/sf2/TimGM6mb.sf2"), Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")]


@pytest.fixture(scope="module")
def font() -> Path:
    found = next((f for f in FONTS if f.is_file()), None)
    problem = None if found else "no General MIDI SoundFont installed (apt-get install timgm6mb-soundfont)"
    if found and not sf.fluidsynth_available():
        problem = "the FluidSynth library is not installed (apt-get install libfluidsynth3)"
    if problem:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI needs it: {problem}")
        pytest.skip(problem)
    return found


def held_chord(synth, pitches, seconds: float = 1.5) -> np.ndarray:
    for voice, pitch in enumerate(pitches):
        synth.note_on(("out", voice, pitch), pitch, 100, registration=voice)
    audio = synth.render(int(seconds * RATE))
    synth.all_notes_off()
    return audio[int(0.3 * RATE):]  # past the attack


def spectrum(audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mono = audio.mean(axis=1)
    magnitude = np.abs(np.fft.rfft(mono * np.hanning(len(mono)), n=4 * len(mono)))
    return np.fft.rfftfreq(4 * len(mono), 1 / RATE), magnitude


def test_a_held_chord_sounds_its_pitches_and_unlike_the_organ(font):
    chord = (72, 67, 64, 48)  # C5 G4 E4 C3, soprano to bass
    synth = sf.SoundFontSynth(font, RATE, programs=(19, 19, 19, 19, 20))  # church organ
    audio = held_chord(synth, chord)
    assert np.abs(audio).max() > 0.01 and np.isfinite(audio).all()
    freqs, magnitude = spectrum(audio)
    floor = np.median(magnitude[(freqs > 100) & (freqs < 2000)])
    for pitch in chord:
        f0 = midi_frequency(pitch)
        near = (freqs > f0 * 0.985) & (freqs < f0 * 1.015)
        assert magnitude[near].max() > 20 * floor, (pitch, magnitude[near].max() / floor)
    # Between the chord's notes (a semitone off each of them) there is no such peak.
    for pitch in (73, 66, 63, 49):
        f0 = midi_frequency(pitch)
        near = (freqs > f0 * 0.995) & (freqs < f0 * 1.005)
        assert magnitude[near].max() < 0.25 * max(magnitude[(freqs > midi_frequency(p) * 0.985) & (freqs < midi_frequency(p) * 1.015)].max() for p in chord)
    organ = held_chord(Synth(RATE), chord)
    n = min(len(audio), len(organ))
    _, organ_magnitude = spectrum(organ[:n])
    _, font_magnitude = spectrum(audio[:n])
    similarity = np.dot(organ_magnitude, font_magnitude) / (np.linalg.norm(organ_magnitude) * np.linalg.norm(font_magnitude))
    assert similarity < 0.9  # the same pitches in another timbre


def test_each_part_plays_its_own_program(font):
    organ = held_chord(sf.SoundFontSynth(font, RATE, programs=(19, 19, 19, 19, 20)), (72,))
    choir = held_chord(sf.SoundFontSynth(font, RATE, programs=(52, 19, 19, 19, 20)), (72,))
    assert not np.allclose(organ, choir, atol=1e-3)


def test_the_first_general_midi_font_is_found_and_other_files_are_passed_over(font, tmp_path, monkeypatch):
    assert len(sf.melodic_programs(font)) >= sf.GM_PROGRAMS_NEEDED
    (tmp_path / "a-broken.sf2").write_text("not a soundfont")
    shutil.copy(font, tmp_path / "b-general-midi.sf2")
    monkeypatch.setenv("BACHD_SOUNDFONT", str(tmp_path))
    assert sf.find_soundfont() == (tmp_path / "b-general-midi.sf2").resolve()
    assert sf.resolve_sound(None) == (tmp_path / "b-general-midi.sf2").resolve()
    assert sf.resolve_sound("organ") is None
    monkeypatch.setattr(sf, "SEARCH_DIRS", ())
    monkeypatch.setenv("BACHD_SOUNDFONT", str(tmp_path / "nowhere"))
    assert sf.resolve_sound(None) is None  # none anywhere: the built-in organ


def test_render_with_a_soundfont_and_bad_fonts_are_one_line_errors(font, tmp_path):
    from bachd.music.midifile import write_midi
    from bachd.music import encoding as enc

    rows = [[enc.attack(p) for p in (72, 67, 64, 48)]] + [[enc.hold(p) for p in (72, 67, 64, 48)]] * 15
    midi = tmp_path / "chord.mid"
    write_midi(np.array(rows, np.int64), midi)
    runner = CliRunner()
    result = runner.invoke(app, ["render", str(midi), "-o", str(tmp_path / "a.wav"), "--soundfont", str(font),
                                 "--programs", "52,52,52,52"])
    assert result.exit_code == 0 and f"with the SoundFont {font}" in result.output, result.output
    (tmp_path / "text.sf2").write_text("RIFF but not really")
    (tmp_path / "empty.sf2").write_bytes(b"")
    for args, message in [
        (["--soundfont", str(tmp_path / "missing.sf2")], "no SoundFont at"),
        (["--soundfont", str(tmp_path / "text.sf2")], "is not a SoundFont"),
        (["--soundfont", str(tmp_path / "empty.sf2")], "is not a SoundFont"),
        (["--soundfont", str(midi)], "is not a SoundFont"),
        (["--programs", "19,19,300"], "General MIDI programs 0-127"),
        (["--programs", "organ"], "General MIDI programs 0-127"),
    ]:
        result = runner.invoke(app, ["render", str(midi), "-o", str(tmp_path / "b.wav"), *args])
        assert result.exit_code == 1 and message in result.output, (args, result.output)
        assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert not (tmp_path / "b.wav").exists()


def test_the_monitor_renders_blocks_with_the_soundfont(font):
    from bachd.sound.audio import Monitor

    clock = [100.0]
    monitor = Monitor(soundfont=font, programs=(19, 19, 19, 19, 20), now=lambda: clock[0])
    monitor.start_synth(RATE)
    monitor.feed(100.0, [0x90, 60, 100])
    monitor.feed(100.0, [0x90, 64, 100], player=True)
    blocks = []
    for _ in range(60):
        blocks.append(monitor.render_block())
        clock[0] += monitor.block_frames / RATE
    audio = np.concatenate(blocks)
    assert isinstance(monitor.synth, sf.SoundFontSynth) and np.abs(audio).max() > 0.01


def test_a_preset_sound_table_is_checked_like_any_setting(tmp_path):
    from bachd.presets import resolve

    good = tmp_path / "choir.toml"
    good.write_text('soundfont = "organ"\n[sound]\nsoprano = 52\nalto = 52\n')
    settings = resolve(str(good))
    assert settings.programs() == (52, 52, 19, 19, 20) and settings.soundfont == "organ"
    assert resolve(str(good), {"sound": {"tenor": 53}}).programs() == (52, 52, 53, 19, 20)
    for text, message in [("[sound]\nsoprano = 128\n", "General MIDI program 0-127"),
                          ("[sound]\nviola = 40\n", "unknown key 'sound.viola'"),
                          ("sound = 3\n", "must be a table")]:
        bad = tmp_path / "bad.toml"
        bad.write_text(text)
        with pytest.raises(BachdError, match=message):
            resolve(str(bad))
