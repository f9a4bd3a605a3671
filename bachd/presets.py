"""Live settings and the TOML presets that hold them.

Precedence, resolved once: built-in defaults < preset file < command-line flags. Every key
is checked against the table below; an unknown key or a bad value is an error that names
the file and the key. Built-in presets are installed with the package (:mod:`bachd.paths`), user
presets in ``$BACHD_CONFIG_DIR/presets`` (default ``~/.config/bachd/presets``, or
``$XDG_CONFIG_HOME/bachd/presets``); a user preset shadows a built-in one of the same name.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from bachd.errors import BachdError
from bachd.paths import PRESETS_DIR

BUILTIN_DIR = PRESETS_DIR
CC_ROLES = ("temperature", "response_bars", "mode", "end_of_call", "panic")


@dataclass(frozen=True)
class LiveSettings:
    description: str = ""
    mode: str = "continue"  # continue | harmonize
    clock: str = "internal"  # internal | midi
    bpm: float = 90.0
    beats_per_bar: int = 4
    temperature: float = 0.9
    top_p: float = 0.95
    rhythm_temperature: float = 1.0  # the hold-or-move choice, drawn apart from pitch
    response_bars: int = 2
    listen_gap: float = 1.0  # beats of silence after the last note-off that end a call
    start_on: str = "beat"  # beat | bar: where an answer starts
    allow_overlap: bool = False  # keep answering when the player comes back in
    # Live, the no-parallels rule is opt-in (allow_parallels = false): with it, harmonize
    # latency p99 measured 5.9 ms against 4.6 ms without (benchmarks/live.py).
    allow_parallels: bool = True
    rng_seed: int | None = None
    in_channel: int = 0  # 0 = all channels, else 1-16
    out_channel: int = 0  # 0 = one channel per voice (1-4 for S, A, T, B), else 1-16 for all
    velocity: int | str = 80  # 1-127, or "follow" the player's velocity
    cc: dict[str, int | None] = field(
        default_factory=lambda: {"temperature": 21, "response_bars": 22, "mode": 23, "end_of_call": 24, "panic": 25}
    )

    @property
    def steps_per_bar(self) -> int:
        return self.beats_per_bar * 4

    def out_channels(self) -> tuple[int, ...]:
        """0-based MIDI channel of each voice."""
        return (0, 1, 2, 3) if self.out_channel == 0 else (self.out_channel - 1,) * 4


def _choice(*options: str) -> Callable[[Any], str | None]:
    return lambda v: None if isinstance(v, str) and v in options else f"must be one of {', '.join(options)}"


def _number(low: float, high: float, integer: bool = False) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
        if isinstance(value, bool) or not ok_type:
            return f"must be {'an integer' if integer else 'a number'}"
        if not (math.isfinite(value) and low <= value <= high):
            return f"must be between {low:g} and {high:g}"
        return None

    return check


def _velocity(value: Any) -> str | None:
    if value == "follow":
        return None
    problem = _number(1, 127, integer=True)(value)
    return None if problem is None else "must be 1-127 or \"follow\""


def _seed(value: Any) -> str | None:
    return None if value is None else _number(0, 2**63 - 1, integer=True)(value)


CHECKS: dict[str, Callable[[Any], str | None]] = {
    "description": lambda v: None if isinstance(v, str) else "must be a string",
    "mode": _choice("continue", "harmonize"),
    "clock": _choice("internal", "midi"),
    "bpm": _number(20, 320),
    "beats_per_bar": _number(2, 12, integer=True),
    "temperature": _number(0.05, 5.0),
    "top_p": _number(0.01, 1.0),
    "rhythm_temperature": _number(0.05, 5.0),
    "response_bars": _number(1, 64, integer=True),
    "listen_gap": _number(0.25, 16.0),
    "start_on": _choice("beat", "bar"),
    "allow_overlap": lambda v: None if isinstance(v, bool) else "must be true or false",
    "allow_parallels": lambda v: None if isinstance(v, bool) else "must be true or false",
    "rng_seed": _seed,
    "in_channel": _number(0, 16, integer=True),
    "out_channel": _number(0, 16, integer=True),
    "velocity": _velocity,
}


def _check_cc(value: Any) -> str | None:
    if value == "off":
        return None
    problem = _number(0, 119, integer=True)(value)
    return None if problem is None else 'must be a controller number 0-119 or "off"'


def validate(values: dict[str, Any], source: str) -> dict[str, Any]:
    """Checked copy of ``values``; ``source`` names where they came from in errors."""
    checked: dict[str, Any] = {}
    for key, value in values.items():
        if key == "cc":
            if not isinstance(value, dict):
                raise BachdError(f"{source}: key 'cc' must be a table of controller numbers")
            cc = {}
            for role, number in value.items():
                if role not in CC_ROLES:
                    raise BachdError(f"{source}: unknown key 'cc.{role}' (known: {', '.join(CC_ROLES)})")
                problem = _check_cc(number)
                if problem:
                    raise BachdError(f"{source}: key 'cc.{role}' {problem}, got {number!r}")
                cc[role] = None if number == "off" else int(number)
            checked["cc"] = cc
            continue
        if key not in CHECKS:
            raise BachdError(f"{source}: unknown key '{key}' (known: {', '.join([*CHECKS, 'cc'])})")
        problem = CHECKS[key](value)
        if problem:
            raise BachdError(f"{source}: key '{key}' {problem}, got {value!r}")
        checked[key] = float(value) if key in ("bpm", "temperature", "top_p", "rhythm_temperature", "listen_gap") else value
    return checked


def user_dir() -> Path:
    if os.environ.get("BACHD_CONFIG_DIR"):
        return Path(os.environ["BACHD_CONFIG_DIR"]) / "presets"
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "bachd" / "presets"


def available() -> dict[str, Path]:
    """Preset name → file, built-in first, user presets shadowing them."""
    found: dict[str, Path] = {}
    for folder in (BUILTIN_DIR, user_dir()):
        if folder.is_dir():
            for path in sorted(folder.glob("*.toml")):
                found[path.stem] = path
    return found


def find(name_or_path: str) -> Path:
    path = Path(name_or_path).expanduser()
    if path.suffix == ".toml" or os.sep in name_or_path or "/" in name_or_path:
        if not path.is_file():
            raise BachdError(f"preset file {path} does not exist")
        return path
    presets = available()
    if name_or_path not in presets:
        names = ", ".join(presets) or "none"
        raise BachdError(f"no preset named '{name_or_path}' (available: {names})")
    return presets[name_or_path]


def read(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise BachdError(f"{path}: not valid TOML: {error}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise BachdError(f"{path}: cannot read preset: {error}") from None
    return validate(data, str(path))


def resolve(preset: str | None = None, overrides: dict[str, Any] | None = None) -> LiveSettings:
    """Defaults < preset < overrides (command-line flags; None means "not given")."""
    settings = LiveSettings()
    if preset:
        values = read(find(preset))
        cc = {**settings.cc, **values.pop("cc", {})}
        settings = replace(settings, cc=cc, **values)
    flags = {k: v for k, v in (overrides or {}).items() if v is not None}
    if flags:
        settings = replace(settings, **validate(flags, "command line"))
    return settings


def describe(settings: LiveSettings) -> str:
    """The resolved settings as TOML text (what ``bachd presets show`` prints)."""
    lines = []
    for item in fields(settings):
        value = getattr(settings, item.name)
        if item.name == "cc":
            continue
        if value is None:
            lines.append(f"# {item.name} = (not set)")
        else:
            lines.append(f"{item.name} = {_toml_value(value)}")
    lines.append("")
    lines.append("[cc]")
    for role in CC_ROLES:
        number = settings.cc.get(role)
        lines.append(f"{role} = {_toml_value('off' if number is None else number)}")
    return "\n".join(lines)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)
