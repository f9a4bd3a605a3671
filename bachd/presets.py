"""Live settings and the TOML presets that hold them.

Precedence, resolved once: built-in defaults < preset file < command-line flags. Every key
is checked against the table below; an unknown key or a bad value is an error that names
the file and the key. Built-in presets are installed with the package (:mod:`bachd.paths`), user
presets in ``$BACHD_CONFIG_DIR/presets`` (default ``~/.config/bachd/presets``, or
``$XDG_CONFIG_HOME/bachd/presets``); a user preset shadows a built-in one of the same name.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Optional

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from bachd.errors import BachdError
from bachd.model.sampling import SamplingConfig
from bachd.music.meter import Meter
from bachd.paths import PRESETS_DIR
from bachd.settings import SAMPLING, SETTINGS, Declared

BUILTIN_DIR = PRESETS_DIR
CC_ROLES = ("temperature", "response_bars", "mode", "end_of_call", "panic")
SOUND_PARTS = ("soprano", "alto", "tenor", "bass", "player")  # [sound]: a General MIDI program each


def _sound_defaults() -> dict[str, int]:
    from bachd.sound.soundfont import DEFAULT_PROGRAMS

    return dict(zip(SOUND_PARTS, DEFAULT_PROGRAMS))


def _cc_defaults() -> dict[str, Optional[int]]:
    return {"temperature": 21, "response_bars": 22, "mode": 23, "end_of_call": 24, "panic": 25}


@dataclass(frozen=True)
class LiveSettings(Declared):
    """The live settings: one field per declared setting (:class:`bachd.settings.Declared`),
    plus the CC assignments and the sound of each part."""

    cc: dict[str, Optional[int]] = field(default_factory=_cc_defaults)  # role -> controller number (None: off)
    sound: dict[str, int] = field(default_factory=_sound_defaults)  # part -> General MIDI program

    @property
    def meter(self) -> Meter:
        return Meter(self.beats_per_bar)

    @property
    def steps_per_bar(self) -> int:
        return self.meter.steps_per_bar

    def out_channels(self) -> tuple[int, ...]:
        """0-based MIDI channel of each voice."""
        return (0, 1, 2, 3) if self.out_channel == 0 else (self.out_channel - 1,) * 4

    def programs(self) -> tuple[int, ...]:
        """The General MIDI program of soprano, alto, tenor, bass and the player's notes."""
        return tuple(self.sound[part] for part in SOUND_PARTS)

    def sampling(self) -> SamplingConfig:
        return SamplingConfig(**{name: getattr(self, name) for name in SAMPLING})


def _check_cc(value: Any) -> str | None:
    if value == "off" or (isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 119):
        return None
    return 'must be a controller number 0-119 or "off"'


def _check_program(value: Any) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 127:
        return None
    return "must be a General MIDI program 0-127"


# The preset's tables: their keys, what each value must be, and what it is kept as.
TABLES: dict[str, tuple[tuple[str, ...], str, Callable[[Any], Optional[str]], Callable[[Any], Any]]] = {
    "cc": (CC_ROLES, "controller numbers", _check_cc, lambda number: None if number == "off" else int(number)),
    "sound": (SOUND_PARTS, "General MIDI programs", _check_program, int),
}


def validate(values: dict[str, Any], source: str) -> dict[str, Any]:
    """Checked copy of ``values``; ``source`` names where they came from in errors."""
    checked: dict[str, Any] = {}
    for key, value in values.items():
        if key in TABLES:
            keys, what, check_value, keep = TABLES[key]
            if not isinstance(value, dict):
                raise BachdError(f"{source}: key '{key}' must be a table of {what}")
            table: dict[str, Any] = {}
            for name, item in value.items():
                if name not in keys:
                    raise BachdError(f"{source}: unknown key '{key}.{name}' (known: {', '.join(keys)})")
                problem = check_value(item)
                if problem:
                    raise BachdError(f"{source}: key '{key}.{name}' {problem}, got {item!r}")
                table[name] = keep(item)
            checked[key] = table
            continue
        if key not in SETTINGS:
            raise BachdError(f"{source}: unknown key '{key}' (known: {', '.join([*SETTINGS, *TABLES])})")
        checked[key] = SETTINGS[key].check(value, source)
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
        sound = {**settings.sound, **values.pop("sound", {})}
        settings = replace(settings, cc=cc, sound=sound, **values)
    flags = {k: v for k, v in (overrides or {}).items() if v is not None}
    if "sound" in flags:  # --programs: a whole [sound] table over the preset's
        flags["sound"] = {**settings.sound, **flags["sound"]}
    if flags:
        settings = replace(settings, **validate(flags, "command line"))
    return settings


def describe(settings: LiveSettings) -> str:
    """The resolved settings as TOML text (what ``bachd presets show`` prints)."""
    lines = []
    for item in fields(settings):
        value = getattr(settings, item.name)
        if item.name in ("cc", "sound"):
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
    lines.append("")
    lines.append("[sound]")
    for part in SOUND_PARTS:
        lines.append(f"{part} = {settings.sound[part]}")
    return "\n".join(lines)


def _toml_string(text: str) -> str:
    """A TOML basic string: quotes, backslashes and every control character escaped, so any
    text (a description typed with a line break) reads back as itself."""
    escaped = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}
    out = []
    for char in text:
        if char in escaped:
            out.append(escaped[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04X}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return _toml_string(value)
    return repr(value)
