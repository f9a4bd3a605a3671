"""Where the bundled model and presets are: inside the installed package (``bachd/shipped_models``,
``bachd/preset_files``), or at the top of a source checkout (``models/``, ``presets/``), which
is where they are kept and what an editable install uses."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def _bundled(installed: str, source: str) -> Path:
    inside = _PACKAGE / installed
    return inside if inside.is_dir() else _PACKAGE.parent / source


MODELS_DIR = _bundled("shipped_models", "models")
PRESETS_DIR = _bundled("preset_files", "presets")
DEFAULT_MODEL = MODELS_DIR / "default.keras"
