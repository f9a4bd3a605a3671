"""The three things bachd grows by, each found by name: live modes, clocks and streaming
engines. Adding one is a module and a line here; the settings, the command line, the control
surface and the docs read the names from these tables.

An entry is ``"module:attribute"``, imported on first use, so that listing the names (the
settings' choices, ``--help``) loads nothing and ``bachd run`` imports only what it plays.
:meth:`Registry.register` adds an object directly (a test's toy mode, a plugin's engine).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import Any, Union


class Registry(Mapping[str, Any]):
    """Name -> class, in the order registered."""

    def __init__(self, kind: str, entries: dict[str, str]):
        self.kind = kind
        self._entries: dict[str, Union[str, Any]] = dict(entries)
        self._loaded: dict[str, Any] = {}

    def register(self, name: str, target: Any) -> None:
        """Add (or replace) ``name``: a class, or ``"module:attribute"``."""
        self._entries[name] = target
        self._loaded.pop(name, None)

    def unregister(self, name: str) -> None:
        self._entries.pop(name, None)
        self._loaded.pop(name, None)

    def spec(self, name: str) -> Union[str, Any]:
        """What ``name`` was registered as: ``"module:attribute"`` or the object itself."""
        return self._entries[name]

    def __getitem__(self, name: str) -> Any:
        if name in self._loaded:
            return self._loaded[name]
        target = self._entries.get(name)
        if target is None:
            raise KeyError(f"no {self.kind} named {name!r} (known: {', '.join(self._entries)})")
        if isinstance(target, str):
            module, _, attribute = target.partition(":")
            target = getattr(importlib.import_module(module), attribute)
        self._loaded[name] = target
        return target

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries


# Live modes (bachd.live.modes.LiveMode): what bachd plays over what it hears.
MODES = Registry("mode", {
    "continue": "bachd.live.continuation:ContinueMode",
    "harmonize": "bachd.live.harmonizer:HarmonizeMode",
})

# Clocks (bachd.live.clock.Clock): where the 16th-note grid lies in time.
CLOCKS = Registry("clock", {
    "internal": "bachd.live.clock:InternalClock",
    "midi": "bachd.live.clock:MidiClock",
    "link": "bachd.live.abletonlink:LinkClock",
    "auto": "bachd.live.clock:AutoClock",
})

# Streaming engines (bachd.model.streaming.StreamingEngine), by backend: each says which model
# architectures it steps. "auto" is not an engine: it picks numpy, or tf where TensorFlow sees a GPU.
ENGINES = Registry("engine", {
    "numpy": "bachd.model.engine:NumpyEngine",
    "tf": "bachd.model.tf_engine:TFEngine",
    "xla": "bachd.model.tf_engine:XLAEngine",
})
