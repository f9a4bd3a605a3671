"""``bachd doctor`` against the cases a stranger meets: a MIDI system that works, none (JACK down,
no ALSA sequencer), bachd's port name taken by another bachd, no SoundFont, a model that
cannot be read. It exits 0 exactly when ``bachd run`` would play."""

import os
import subprocess
import sys

import pytest

from bachd.live.doctor import Finding, soundfont, would_play


def doctor(env: dict, *args: str) -> tuple[int, list[str], str]:
    result = subprocess.run([sys.executable, "-m", "bachd", "doctor", *args], env=env, capture_output=True, text=True,
                            timeout=120)
    return result.returncode, result.stdout.splitlines(), result.stderr


def line(lines: list[str], what: str) -> str:
    found = [text for text in lines if text[5:].startswith(what + ":")]
    assert len(found) == 1, (what, lines)
    return found[0]


def test_where_bachd_run_would_play_every_line_says_so_and_it_exits_0(jack):
    code, lines, err = doctor(jack.env(), "--backend", "jack")
    assert code == 0, lines + [err]
    assert line(lines, "Python").startswith("ok   Python: 3.")
    assert line(lines, "python-rtmidi's MIDI systems").startswith("ok  ") and "jack" in line(lines, "python-rtmidi's MIDI systems")
    assert line(lines, "MIDI (jack)").startswith("ok   MIDI (jack): works")
    assert line(lines, "MIDI input 'bachd-in'") == "ok   MIDI input 'bachd-in': free: bachd creates it"
    assert line(lines, "MIDI output 'bachd-out'") == "ok   MIDI output 'bachd-out': free: bachd creates it"
    assert line(lines, "model").startswith("ok   model: default.keras (2x448 lstm) loads; a step takes ")
    assert lines[-1] == "bachd run would play here." and err == ""


def test_with_jack_down_and_no_alsa_sequencer_it_says_what_to_start_and_exits_1(tmp_path):
    env = {**os.environ, "JACK_DEFAULT_SERVER": "bachd-test-no-such-server", "JACK_NO_START_SERVER": "1"}
    code, lines, err = doctor(env, "--backend", "jack")
    assert code == 1
    assert line(lines, "MIDI (jack)") == ("note MIDI (jack): no JACK server is running (start one, e.g. `jackd -d dummy` "
                                          "on a headless Linux box)")
    assert line(lines, "a MIDI system for bachd run").startswith("FAIL a MIDI system for bachd run: no MIDI system is "
                                                                 "available. On Linux start a JACK server")
    assert line(lines, "model").startswith("ok   model:")  # everything else is still checked
    assert err.strip() == "error: bachd run would not play here: see the lines marked FAIL"
    if not os.path.exists("/dev/snd/seq"):  # as on this test machine: no MIDI system at all
        code, lines, _ = doctor(env)
        assert code == 1 and line(lines, "ALSA sequencer").startswith("note ALSA sequencer: no /dev/snd/seq")


def test_a_port_name_another_bachd_holds_is_a_failure_with_the_flag_to_change_it(jack):
    import rtmidi

    other = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name="bachd-in")
    other.open_virtual_port("bachd-in")  # another bachd's input
    try:
        code, lines, _ = doctor(jack.env(), "--backend", "jack")
        assert code == 1
        assert line(lines, "MIDI input 'bachd-in'") == ("FAIL MIDI input 'bachd-in': a port named 'bachd-in' already "
                                                        "exists (is another bachd running?): stop it, or give --in "
                                                        "another name")
        code, lines, _ = doctor(jack.env(), "--backend", "jack", "--in", "bachd-two")
        assert code == 0 and line(lines, "MIDI input 'bachd-two'").endswith("free: bachd creates it")
    finally:
        other.close_port()
        other.delete()


def test_no_soundfont_is_a_note_not_a_failure(tmp_path):
    empty = soundfont([str(tmp_path)])
    assert not empty.ok and not empty.needed
    assert empty.line().startswith("note SoundFont: none found: the built-in organ plays.")
    assert would_play([empty, Finding("model", True, "loads")])
    assert not would_play([empty, Finding("model", False, "cannot be read")])


def test_an_unreadable_model_fails_with_its_reason(jack, tmp_path):
    bad = tmp_path / "broken.keras"
    bad.write_bytes(b"not a model at all")
    code, lines, err = doctor(jack.env(), "--backend", "jack", "--model", str(bad))
    assert code == 1
    assert line(lines, "model").startswith(f"FAIL model: {bad} is not a readable bachd model")
    assert "Traceback" not in err


@pytest.mark.parametrize("args", [["--backend", "nope"], ["--engine", "nope"]])
def test_a_wrong_option_is_one_line(args):
    code, lines, err = doctor(dict(os.environ), *args)
    assert code == 2 and "Traceback" not in err
