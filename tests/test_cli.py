"""The command line, through subprocesses as a user runs it, and typer's CliRunner."""

import json
import subprocess
import sys

import mido
import pytest
from typer.testing import CliRunner

from bachd.cli import app
from bachd.music.midifile import TICKS_PER_STEP

from conftest import cli_env
from fakes import melody_file

runner = CliRunner()


def bachd(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "bachd", *map(str, args)], capture_output=True, text=True, env=cli_env(), cwd=cwd, timeout=300)


def test_help_lists_commands_without_importing_tensorflow():
    probe = "import sys; from bachd.cli import app; print('tensorflow' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).stdout.strip() == "False"
    result = bachd("--help")
    assert result.returncode == 0
    for command in ("train", "eval", "generate", "run", "ports", "presets"):
        assert command in result.stdout
    assert bachd("--version").stdout.startswith("bachd ")


def _note_ons(path):
    mid = mido.MidiFile(path)
    return [(i, m) for i, track in enumerate(mid.tracks) for m in track if m.type == "note_on" and m.velocity]


def test_generate_from_a_chorale_writes_four_voices(tiny_model_path, tmp_path):
    out = tmp_path / "answer.mid"
    result = bachd("generate", "--model", tiny_model_path, "--seed-chorale", "269", "--seed-bars", "2", "--bars", "2",
                   "--bpm", "100", "--rng-seed", "4", "-o", out)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and result.stderr.strip() == ""
    mid = mido.MidiFile(out)
    assert mid.length == pytest.approx(2 * 4 * 60 / 100, abs=1e-4)
    assert {track for track, _ in _note_ons(out)} <= {1, 2, 3, 4}


def test_generate_variations_and_seed_inclusion(tiny_model_path, tmp_path):
    seed = tmp_path / "seed.mid"
    mid = mido.MidiFile(ticks_per_beat=480)
    track = mido.MidiTrack()
    for note in (67, 69, 71, 72):
        track += [mido.Message("note_on", note=note, velocity=80, time=0), mido.Message("note_off", note=note, time=480)]
    mid.tracks.append(track)
    mid.save(seed)
    out = tmp_path / "var.mid"
    result = runner.invoke(app, ["generate", "--model", str(tiny_model_path), "--seed-file", str(seed), "--bars", "1",
                                 "--variations", "3", "--include-seed", "--rng-seed", "1", "-o", str(out)])
    assert result.exit_code == 0, result.output
    files = sorted(tmp_path.glob("var-*.mid"))
    assert [f.name for f in files] == ["var-1.mid", "var-2.mid", "var-3.mid"]
    assert result.output.count("most likely") == 1
    for file in files:
        soprano = [m.note for t, m in _note_ons(file) if t == 1][:4]
        assert soprano == [67, 69, 71, 72]  # the seed melody, as played
        assert mido.MidiFile(file).length == pytest.approx((4 + 4) * 60 / 90, abs=1e-4)
    best = runner.invoke(app, ["generate", "--model", str(tiny_model_path), "--bars", "1", "--variations", "3",
                               "--pick-best", "--rhythm-temperature", "1.3", "-o", str(tmp_path / "best.mid")])
    assert best.exit_code == 0 and (tmp_path / "best.mid").exists() and not list(tmp_path.glob("best-*.mid"))


@pytest.mark.parametrize(
    "args, message",
    [
        (["generate", "--model", "{tmp}/missing.keras", "-o", "{tmp}/x.mid"], "does not exist"),
        (["generate", "--model", "{tmp}/corrupt.keras", "-o", "{tmp}/x.mid"], "not a readable bachd model"),
        (["generate", "-m", "{tmp}/empty.keras", "-o", "{tmp}/x.mid"], "not a readable bachd model"),
        (["generate", "-m", "{tmp}/other.keras", "-o", "{tmp}/x.mid"], "not a readable bachd model (it has no token_embedding"),
        (["run", "--model", "{tmp}/other.keras"], "not a readable bachd model (it has no token_embedding"),
        (["eval", "{tmp}/other.keras"], "not a readable bachd model (it has no token_embedding"),
        (["generate", "--model", "{model}", "-o", "/proc/x.mid"], "cannot write --out /proc/x.mid"),
        (["generate", "--model", "{model}", "-o", "{tmp}/folder.mid"], "--out {tmp}/folder.mid is a directory"),
        (["generate", "--model", "{model}", "-o", "{tmp}/x.mid", "--wav", "/proc/x.wav"], "cannot write --wav /proc/x.wav"),
        (["generate", "--model", "{model}", "-o", "{tmp}/x.mid", "--plot", "/proc/x.png"], "cannot write --plot /proc/x.png"),
        (["render", "{tmp}/seed.mid", "-o", "/proc/x.wav"], "cannot write --out /proc/x.wav"),
        (["train", "--corpus", "{tmp}/nothing.json", "--out", "/proc/T.keras"], "cannot write --out /proc/T.keras"),
        (["train", "--out", "{tmp}/m.keras", "--distribute", "multiworker"], "needs TF_CONFIG"),
        (["run", "--model", "{model}", "--stats-json", "/proc/s.json"], "cannot write --stats-json /proc/s.json"),
        (["generate", "--model", "{model}", "--seed-file", "{tmp}/drums.mid", "-o", "{tmp}/x.mid"], "only notes are drums"),
        (["generate", "--model", "{model}", "--seed-chorale", "99999", "-o", "{tmp}/x.mid"], "no chorale"),
        (["generate", "--model", "{model}", "--seed-file", "{tmp}/none.mid", "-o", "{tmp}/x.mid"], "does not exist"),
        (["generate", "--model", "{model}", "-o", "{tmp}/x.wav"], ".mid"),
        (["eval", "{model}", "--corpus", "{tmp}/nothing.json"], "does not exist"),
        (["train", "--corpus", "{tmp}/nothing", "--out", "{tmp}/m.keras"], "does not exist"),
        (["train", "--init-from", "{tmp}/missing.keras", "--out", "{tmp}/m.keras"], "--init-from: {tmp}/missing.keras does not exist"),
        (["train", "--init-from", "{model}", "--lstm-units", "64", "--out", "{tmp}/m.keras"],
         "--lstm-units cannot be combined with --init-from"),
        (["train", "--teacher", "{tmp}/missing.keras", "--out", "{tmp}/m.keras"], "--teacher: {tmp}/missing.keras does not exist"),
        (["train", "--teacher", "{model}", "--teacher-weight", "1", "--teacher-weight", "2", "--out", "{tmp}/m.keras"],
         "2 --teacher-weight for 1 --teacher"),
        (["train", "--teacher-weight", "1", "--out", "{tmp}/m.keras"], "--teacher-weight needs --teacher"),
    ],
)
def test_bad_input_is_one_line_and_nonzero(args, message, tiny_model_path, tmp_path, other_keras_model):
    (tmp_path / "corrupt.keras").write_bytes(b"PK\x03\x04 broken")
    (tmp_path / "empty.keras").write_bytes(b"")
    (tmp_path / "other.keras").write_bytes(other_keras_model.read_bytes())
    (tmp_path / "folder.mid").mkdir()
    melody_file(tmp_path / "seed.mid", [60, 62])
    melody_file(tmp_path / "drums.mid", [36, 38, 36, 38], channel=9)
    args = [a.format(tmp=tmp_path, model=tiny_model_path) for a in args]
    result = bachd(*args)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message.format(tmp=tmp_path) in lines[0], result.stderr
    assert not (tmp_path / "x.mid").exists()  # outputs are checked before any work: nothing half-written


@pytest.fixture(scope="session")
def other_keras_model(tmp_path_factory):
    """A valid .keras file of a model that is not bachd's."""
    import keras

    inputs = keras.Input(shape=(3,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    path = tmp_path_factory.mktemp("other") / "other.keras"
    model.save(str(path))
    return path


def test_a_long_seed_feeds_only_its_last_bars(tiny_model_path, tmp_path):
    """A 2,000-note seed (250 bars): only its last 16 bars are read into the engine, so the
    file written with the seed is 16 + 1 bars long."""
    from bachd.settings import SEED_BARS

    melody_file(tmp_path / "long.mid", [60 + k % 12 for k in range(2000)])
    out = tmp_path / "long-answer.mid"
    result = runner.invoke(app, ["generate", "--model", str(tiny_model_path), "--seed-file", str(tmp_path / "long.mid"),
                                 "--bars", "1", "--include-seed", "--rng-seed", "1", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert mido.MidiFile(out).length == pytest.approx((SEED_BARS + 1) * 4 * 60 / 90, abs=1e-3)


@pytest.mark.parametrize("args", [["generate", "-o", "x.mid", "--temperature", "0"], ["generate", "-o", "x.mid", "--bars", "-2"],
                                  ["generate", "-o", "x.mid", "--rhythm-temperature", "0"],
                                  ["generate", "-o", "x.mid", "--rng-seed", "-1"], ["eval", "m.keras", "--music", "--rng-seed", "-1"],
                                  ["train", "--epochs", "0"], ["eval", "m.keras", "--split", "nope"]])
def test_out_of_range_options_exit_with_usage_error(args):
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output


def test_eval_json_on_a_tiny_corpus(tiny_model_path, tiny_json_corpus):
    result = bachd("eval", tiny_model_path, "--corpus", tiny_json_corpus, "--split", "valid", "--json")
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert {"pitch_nll", "token_nll", "accuracy", "perplexity", "tokens"} <= figures.keys()
    assert figures["tokens"] == (64 + 48) * 4
    assert 0 < figures["pitch_nll"] <= figures["token_nll"]


def test_musicxml_melody_seed_gives_the_soprano_only(tmp_path):
    from music21 import note, stream

    from bachd.music import encoding as enc
    from bachd.files.generation import load_seed

    part = stream.Part()
    for name in ("G4", "A4", "B4", "C5"):
        part.append(note.Note(name, quarterLength=1.0))
    path = tmp_path / "melody.musicxml"
    stream.Score([part]).write("musicxml", fp=str(path))
    seed = load_seed(str(path), None)
    assert seed.known[:, 0].all() and not seed.known[:, 1:].any()
    pitches, attacks = enc.decode_pitches(seed.tokens)
    assert pitches[::4, 0].tolist() == [67, 69, 71, 72] and attacks[::4, 0].all() and not attacks[1::4, 0].any()


def test_presets_list_and_show():
    listed = bachd("presets")
    assert listed.returncode == 0
    for name in ("chorale", "harmonizer", "adventurous"):
        assert name in listed.stdout
    shown = bachd("presets", "show", "harmonizer")
    assert shown.returncode == 0 and 'mode = "harmonize"' in shown.stdout and "[cc]" in shown.stdout
    missing = bachd("presets", "show", "nope")
    assert missing.returncode == 1 and missing.stderr.startswith("error: no preset named 'nope'")


def test_run_reports_bad_presets_and_missing_midi_in_one_line(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("tempo = 90\n")
    result = bachd("run", "--preset", bad)
    assert result.returncode == 1 and result.stderr.strip() == f"error: {bad}: unknown key 'tempo' (known: " + result.stderr.split("(known: ")[1].strip()
    env = cli_env()
    env["JACK_DEFAULT_SERVER"] = "bachd-no-such-server"
    env["JACK_NO_START_SERVER"] = "1"
    no_jack = subprocess.run([sys.executable, "-m", "bachd", "run", "--backend", "jack"], capture_output=True, text=True, env=env, timeout=120)
    assert no_jack.returncode == 1
    assert no_jack.stderr.strip().splitlines() == ["error: cannot use the jack MIDI backend: no JACK server is running (start one, e.g. `jackd -d dummy` on a headless Linux box) (`bachd doctor` checks the whole setup)"]
    assert bachd("run", "--velocity", "loud").stderr.startswith("error: --velocity must be 1-127 or 'follow'")
    assert bachd("run", "--mode", "solo").returncode == 2


def test_ports_lists_backends():
    result = bachd("ports")
    assert result.returncode == 0
    assert "jack:" in result.stdout


def test_train_with_attention_then_generate_from_it(tiny_json_corpus, tmp_path):
    out = tmp_path / "att.keras"
    result = bachd("train", "--corpus", tiny_json_corpus, "--out", out, "--epochs", "1", "--lstm-units", "16",
                   "--embed-dim", "8", "--lstm-layers", "1", "--window-steps", "16", "--attention-steps", "2")
    assert result.returncode == 0, result.stderr
    card = json.loads(out.with_name("att.card.json").read_text())
    assert card["model"]["attention_steps"] == 2 and card["model"]["attention_heads"] == 4
    assert card["model"]["attention_key_dim"] == 32
    result = bachd("generate", "--model", out, "--bars", "2", "-o", tmp_path / "x.mid", "--rng-seed", "1")
    assert result.returncode == 0, result.stderr
    assert sum(1 for m in mido.MidiFile(tmp_path / "x.mid") if m.type == "note_on" and m.velocity) > 0


@pytest.mark.parametrize("rng_seed, beat", [(2, 1), (4, 4)], ids=["downbeat", "pickup"])
def test_generate_opens_in_the_key_asked_for(tiny_model_path, tmp_path, rng_seed, beat):
    out = tmp_path / "dminor.mid"
    result = runner.invoke(app, ["generate", "--model", str(tiny_model_path), "--bars", "1", "--key", "D minor",
                                 "--rng-seed", str(rng_seed), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert f"opening in D minor on beat {beat}" in result.output
    starts = []
    for track in mido.MidiFile(out).tracks:
        at = 0
        for message in track:
            at += message.time
            if message.type == "note_on" and message.velocity:
                starts.append((at, message.note % 12))
    first = min(at for at, _ in starts)
    assert first == (beat - 1) * 4 * TICKS_PER_STEP  # the file's bar lines are the music's
    opening = {pc for at, pc in starts if at == first}
    assert opening and opening <= {2, 5, 9}  # D, F, A


def test_generate_says_what_is_wrong_with_a_key(tiny_model_path, tmp_path):
    for bad, why in ((["--key", "H dur"], "not a key"), (["--key", "D", "--seed-chorale", "269"], "seed brings its own key")):
        result = bachd("generate", "--model", tiny_model_path, *bad, "-o", tmp_path / "x.mid")
        assert result.returncode == 1 and why in result.stderr and "Traceback" not in result.stderr


# --- bachd service --------------------------------------------------------------------------------
@pytest.mark.parametrize("args, said", [
    (["--backend", "jak"], "bachd run --backend jak: Invalid value for '--backend'"),
    (["--bpm", "9000"], "bachd run --bpm 9000: Invalid value for '--bpm'"),
    (["--tempo", "90"], "No such option: --tempo"),
    (["--preset", "nope"], "no preset named 'nope'"),
    (["--model", "/nowhere/model.keras"], "model /nowhere/model.keras does not exist"),
])
def test_service_checks_the_run_options_before_it_writes_a_unit(args, said):
    result = runner.invoke(app, ["service", *args])
    assert result.exit_code == 1 and result.stdout == ""  # no unit that could only fail
    assert said in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_service_writes_a_unit_that_restarts_a_few_times_then_gives_up():
    result = runner.invoke(app, ["service", "--preset", "harmonizer", "--backend", "jack", "--bpm", "100"])
    assert result.exit_code == 0, result.stderr
    unit = result.stdout
    command = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    assert command.endswith(" run --no-status --preset harmonizer --backend jack --bpm 100")
    assert "Restart=on-failure" in unit and "StartLimitBurst=10" in unit and "StartLimitIntervalSec=300" in unit
    help_text = runner.invoke(app, ["service", "--help"]).stdout
    assert "bachd.service" in " ".join(help_text.split()) and "bachd.live.service" not in help_text


def test_train_defaults_are_the_recipe_of_the_shipped_default_model():
    import typer

    from bachd.paths import MODELS_DIR

    card = json.loads((MODELS_DIR / "default.card.json").read_text())
    defaults = {p.name: p.default for p in typer.main.get_command(app).commands["train"].params}
    model, training = card["model"], card["training"]
    for name in ("lstm_units", "lstm_layers", "embed_dim", "dropout"):
        assert defaults[name] == model[name], name
    for name in ("window_steps", "transpose", "passes"):
        assert defaults[name] == training["window"][name], name
    for name in ("epochs", "batch_size", "learning_rate", "weight_decay", "patience", "seed"):
        assert defaults[name] == training[name], name
