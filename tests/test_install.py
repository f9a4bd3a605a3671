"""What a user installs: the live and generate paths run without TensorFlow, and the wheel
carries the default model and the presets, so bachd works from anywhere after a plain
(non-editable) install."""

import subprocess
import sys
import venv
from pathlib import Path

import pytest

from conftest import cli_env

ROOT = Path(__file__).resolve().parents[1]

# Runs generate, render, presets and ports as the CLI does, then builds the live daemon
# (engine, performer, output) on a fake port and plays a few notes through it.
NO_TF_PROBE = """
import sys, time
from pathlib import Path
from bachd.cli import app

out = Path(sys.argv[1])
for args in (["generate", "--bars", "2", "--rng-seed", "1", "-o", str(out / "a.mid")],
             ["render", str(out / "a.mid"), "-o", str(out / "a.wav")],
             ["presets"], ["presets", "show", "harmonizer"], ["ports"]):
    try:
        app(args, standalone_mode=False)
    except SystemExit as stop:
        assert not stop.code, (args, stop.code)

from bachd.live.daemon import Daemon, RunOptions
from bachd.live.launch import load_engine
from bachd.paths import DEFAULT_MODEL
from bachd.presets import resolve

sys.path.insert(0, sys.argv[2])
from fakes import FakePorts

ports = FakePorts()
settings = resolve("harmonizer", {"clock": "internal", "rng_seed": 3})
daemon = Daemon(RunOptions(settings=settings, model_path=DEFAULT_MODEL), ports, load_engine(DEFAULT_MODEL))
now = time.monotonic()
daemon.performer.note_on(now, 72, 90)
daemon.performer.update(now)
assert sum(m[0] & 0xF0 == 0x90 and m[2] > 0 for m in ports.sent) == 3, ports.sent  # alto, tenor, bass
print("tensorflow" in sys.modules, "keras" in sys.modules)
"""


def test_live_and_generate_paths_do_not_import_tensorflow(tmp_path):
    tests = str(Path(__file__).resolve().parent)
    result = subprocess.run([sys.executable, "-c", NO_TF_PROBE, str(tmp_path), tests], capture_output=True, text=True,
                            env=cli_env(), timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "False False"
    assert (tmp_path / "a.mid").stat().st_size > 0 and (tmp_path / "a.wav").stat().st_size > 0


@pytest.mark.slow
def test_the_wheel_installs_without_tensorflow_and_runs_outside_the_repository(tmp_path):
    """Build the wheel, install it (non-editable) into a fresh virtual environment, and run
    ``bachd presets`` and ``bachd generate`` from a folder outside the repository."""
    env = {k: v for k, v in cli_env().items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    wheels = tmp_path / "wheels"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(ROOT)],
                           capture_output=True, text=True, env=env, timeout=600)
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = wheels.glob("bachd-*.whl")
    target = tmp_path / "venv"
    venv.create(target, with_pip=True)
    python = target / "bin" / "python"
    install = subprocess.run([str(python), "-m", "pip", "install", "-q", str(wheel)], capture_output=True, text=True,
                             env=env, timeout=900)
    assert install.returncode == 0, install.stderr[-2000:]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    bachd = [str(target / "bin" / "bachd")]
    presets = subprocess.run(bachd + ["presets"], capture_output=True, text=True, env=env, cwd=elsewhere, timeout=120)
    assert presets.returncode == 0, presets.stderr
    assert {line.split()[0] for line in presets.stdout.splitlines() if "built-in" in line} == {"adventurous", "chorale", "harmonizer"}
    generated = subprocess.run(bachd + ["generate", "--bars", "2", "--rng-seed", "1", "-o", "out.mid"],
                               capture_output=True, text=True, env=env, cwd=elsewhere, timeout=120)
    assert generated.returncode == 0, generated.stderr
    assert (elsewhere / "out.mid").stat().st_size > 0
    # Training needs the train extra: without it, one line that says how to get it.
    training = subprocess.run(bachd + ["train", "--out", "m.keras"], capture_output=True, text=True, env=env,
                              cwd=elsewhere, timeout=120)
    assert training.returncode == 1 and training.stderr.strip().splitlines() == [
        "error: this needs TensorFlow, which is not installed: pip install 'bachd[train]' "
        "(bachd run, generate and render work without it)"]
    installed = subprocess.run([str(python), "-c", "import importlib.util as u, bachd.paths as p; "
                                "print(u.find_spec('tensorflow') is None, p.DEFAULT_MODEL.is_file(), p.DEFAULT_MODEL)"],
                               capture_output=True, text=True, env=env, cwd=elsewhere, timeout=60)
    no_tf, has_model, model = installed.stdout.split()
    assert (no_tf, has_model) == ("True", "True") and str(target) in model
    # The web pages' assets travel in the wheel: the panel and the studio work offline.
    assets = subprocess.run([str(python), "-c", "import bachd.web.server as s; print(' '.join(sorted(s._assets())))"],
                            capture_output=True, text=True, env=env, cwd=elsewhere, timeout=60)
    assert set(assets.stdout.split()) >= {"panel.html", "studio.html", "common.js", "panel.js", "studio.js", "bachd.css"}, assets.stderr
    for asset in (ROOT / "bachd" / "web" / "assets").iterdir():  # nothing fetched from elsewhere (no CDN)
        text = asset.read_text()
        assert "https://" not in text and "http://" not in text and 'src="//' not in text, asset.name
