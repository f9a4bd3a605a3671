"""``bachd doctor``: what ``bachd run`` needs, checked one thing at a time, each said in one
line with what to do about it. It opens nothing it does not close, and exits 0 only when
``bachd run`` would play.
"""

from __future__ import annotations

import importlib.metadata
import os
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from bachd.errors import BachdError

# What bachd run imports, and what only some commands need (the name pip knows it by).
NEEDED = ("mido", "python-rtmidi", "numpy", "h5py", "typer")
OPTIONAL = {
    "sounddevice": "the monitor (--monitor)",
    "pyfluidsynth": "SoundFonts",
    "aiohttp": "the control surface and the studio (--ui, bachd ui)",
    "linkpython-extern": "Ableton Link (--clock link)",
    "tensorflow": "bachd train and eval, and --engine tf (pip install 'bachd[train]')",
}
STEPS = 200  # engine steps timed for the model's line


@dataclass(frozen=True)
class Finding:
    what: str  # "Python", "MIDI (jack)", "port names"...
    ok: bool
    says: str  # what works, or what to do
    needed: bool = True  # whether bachd run needs it to play

    def line(self) -> str:
        mark = "ok  " if self.ok else ("FAIL" if self.needed else "note")
        return f"{mark} {self.what}: {self.says}"


def python_and_packages() -> list[Finding]:
    version = ".".join(map(str, sys.version_info[:3]))
    found = [Finding("Python", sys.version_info >= (3, 10), version if sys.version_info >= (3, 10) else
                     f"{version}: bachd needs Python 3.10 or newer")]
    for name in (*NEEDED, *OPTIONAL):
        try:
            found.append(Finding(name, True, importlib.metadata.version(name), needed=name in NEEDED))
        except importlib.metadata.PackageNotFoundError:
            what = "bachd run needs it" if name in NEEDED else f"only for {OPTIONAL[name]}"
            found.append(Finding(name, False, f"not installed ({what}): pip install {name}", needed=name in NEEDED))
    return found


def midi(backend: str = "auto", names: Sequence[str] = ("bachd-in", "bachd-out")) -> list[Finding]:
    """The MIDI systems this python-rtmidi was built with, which of them work here, and whether
    bachd's port names are free on the one ``bachd run --backend`` would take."""
    from bachd.live.ports import BACKENDS, compiled_backends, no_backend_message, probe

    if backend != "auto" and backend not in BACKENDS:
        raise BachdError(f"unknown MIDI backend {backend!r} (auto, {', '.join(BACKENDS)})")
    compiled = compiled_backends()
    found = [Finding("python-rtmidi's MIDI systems", bool(compiled), ", ".join(compiled) or
                     "none: reinstall python-rtmidi (built with ALSA, JACK or CoreMIDI headers)")]
    if os.path.exists("/proc/asound") or sys.platform.startswith("linux"):
        seq = os.path.exists("/dev/snd/seq")
        found.append(Finding("ALSA sequencer", seq, "/dev/snd/seq is there" if seq else
                             "no /dev/snd/seq (load snd-seq, or use JACK)", needed=False))
    chosen = None
    for name in compiled if backend == "auto" else [backend]:
        if name not in compiled:
            built = ", ".join(compiled)
            found.append(Finding(f"MIDI ({name})", False, f"not in this build of python-rtmidi ({built})"))
            continue
        works, why, inputs, outputs = probe(name)
        found.append(Finding(f"MIDI ({name})", works, f"works ({len(inputs)} sources, {len(outputs)} destinations)"
                             if works else why, needed=False))
        if works and chosen is None:
            chosen = (name, inputs, outputs)
    if chosen is None:
        found.append(Finding("a MIDI system for bachd run", False, no_backend_message()))
        return found
    name, sources, destinations = chosen
    found.append(Finding("a MIDI system for bachd run", True, name))
    found.append(_port(names[0], "input", "--in", sources, destinations))
    found.append(_port(names[1], "output", "--out", destinations, sources))
    return found


def _port(name: str, kind: str, flag: str, connectable: list[str], rivals: list[str]) -> Finding:
    """What ``bachd run`` would do with its ``kind`` named ``name``: connect to an existing port
    of that name (a keyboard, a synth), create it, or fail because another program's
    ``kind`` has that name (another bachd)."""
    from bachd.live.ports import _match

    existing = _match(name, connectable)
    if existing is not None:
        return Finding(f"MIDI {kind} '{name}'", True, f"connects to the existing port {connectable[existing]}")
    if _match(name, rivals) is not None:
        return Finding(f"MIDI {kind} '{name}'", False, f"a port named '{name}' already exists (is another bachd "
                       f"running?): stop it, or give {flag} another name")
    return Finding(f"MIDI {kind} '{name}'", True, "free: bachd creates it")


def audio() -> list[Finding]:
    """The audio output and the SoundFont, which only the monitor needs."""
    found = []
    try:
        from bachd.sound.audio import output_devices

        devices = output_devices()
        default = next((d for d in devices if d["default"]), devices[0] if devices else None)
        found.append(Finding("audio output (--monitor)", default is not None,
                             f"{default['name']} [{default['hostapi']}]" if default else "none found", needed=False))
    except BachdError as error:
        found.append(Finding("audio output (--monitor)", False, str(error), needed=False))
    found.append(soundfont())
    return found


def soundfont(places: Optional[Iterable[str]] = None) -> Finding:
    from bachd.sound.soundfont import find_soundfont

    font = find_soundfont(places)
    return Finding("SoundFont", font is not None, str(font) if font else
                   "none found: the built-in organ plays. For General MIDI sounds install one (Debian/Ubuntu: "
                   "timgm6mb-soundfont or fluid-soundfont-gm) or pass --soundfont FILE", needed=False)


def model(path: Path, backend: str = "auto") -> Finding:
    from bachd.live.launch import load_engine
    from bachd.model.modelfile import read_config

    try:
        config = read_config(path)
        engine = load_engine(path, backend)
        state = engine.get_state()
        start = time.perf_counter()
        for k in range(STEPS):
            engine.step(0, k % 4, k % 16)
        step_ms = (time.perf_counter() - start) / STEPS * 1000
        engine.set_state(state)
    except BachdError as error:
        return Finding("model", False, str(error))
    size = f"{config.lstm_layers}x{config.lstm_units} {config.architecture}"
    return Finding("model", True, f"{path.name} ({size}) loads; a step takes {step_ms:.3f} ms on the "
                   f"{type(engine).backend} engine")


def examine(backend: str = "auto", names: Sequence[str] = ("bachd-in", "bachd-out"), model_path: Optional[Path] = None,
            engine: str = "auto") -> list[Finding]:
    from bachd.paths import DEFAULT_MODEL

    return [*python_and_packages(), *midi(backend, names), *audio(), model(model_path or DEFAULT_MODEL, engine)]


def would_play(findings: Iterable[Finding]) -> bool:
    return all(f.ok for f in findings if f.needed)
