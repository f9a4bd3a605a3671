"""What the panel and the studio both serve: the settings table as controls, and presets."""

from __future__ import annotations

import os
import re
from pathlib import Path

from aiohttp import web

from bachd import presets
from bachd.errors import BachdError
from bachd.settings import SETTINGS

PRESET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,39}")


def setting_schema() -> list[dict]:
    """Every declared setting as a control: what the page draws, generated from the table."""
    rows = []
    for s in SETTINGS.values():
        if s.kind is bool:
            control = "switch"
        elif s.choices:
            control = "choice"
        elif s.kind is str:
            control = "text"
        elif s.high is not None and s.low is not None and s.high - s.low > 1000:
            control = "number"  # a seed: typed, not slid
        else:
            control = "slider"
        rows.append({
            "name": s.name, "label": s.label, "help": s.help, "control": control, "kind": s.kind.__name__,
            "low": s.low, "high": s.high, "choices": list(s.choices), "also": list(s.also), "optional": s.optional,
            "default": s.default, "offline_default": s.offline_default(), "live": s.live,
            "step": 1 if s.kind is int else _step(s.low, s.high),
        })
    return rows


def _step(low, high) -> float:
    if low is None or high is None:
        return 0.01
    span = high - low
    return 0.01 if span <= 10 else 0.1 if span <= 100 else 1


def preset_list() -> list[dict]:
    user = presets.user_dir()
    return [{"name": name, "user": path.parent == user} for name, path in presets.available().items()]


def preset_values(name: str) -> dict:
    """The settings a preset gives (built-in defaults under its own keys)."""
    settings = presets.resolve(checked_preset_name(name))
    return {key: getattr(settings, key) for key in SETTINGS}


def checked_preset_name(name) -> str:
    """A preset name from a page, or a one-line error: never a path."""
    if not isinstance(name, str) or not PRESET_NAME.fullmatch(name):
        raise BachdError("a preset name is 1-40 letters, digits, '-' or '_', starting with a letter or digit")
    return name


def save_preset(name, settings, description: str = "") -> Path:
    """Write ``settings`` as the user preset ``name`` (where ``bachd presets`` finds it),
    then read it back through the same validation as any preset."""
    from dataclasses import replace

    name = checked_preset_name(name)
    if description:
        settings = replace(
            settings, description=presets.validate({"description": description}, "preset")["description"]
        )
    folder = presets.user_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.toml"
    text = "# Saved from bachd's control surface.\n" + "\n".join(
        line
        for line in presets.describe(settings).splitlines()
        if not line.startswith("# ") and not line.startswith("record ")
    )
    temporary = path.with_suffix(".toml.tmp")
    try:
        temporary.write_text(text + "\n", encoding="utf-8")
        presets.read(temporary)  # validated like any preset before it takes the name
        os.replace(temporary, path)
    except (BachdError, UnicodeError, ValueError) as error:
        reason = (
            str(error).replace(str(temporary), "").strip(" :")
            if isinstance(error, BachdError)
            else "text bachd cannot save"
        )
        raise BachdError(f"preset '{name}' was not saved: {reason}") from None
    finally:
        temporary.unlink(missing_ok=True)  # never left behind, saved or not
    return path


def add_common_routes(app: web.Application) -> None:
    async def schema(request: web.Request) -> web.Response:
        return web.json_response({"settings": setting_schema()})

    async def list_presets(request: web.Request) -> web.Response:
        return web.json_response({"presets": preset_list()})

    async def one_preset(request: web.Request) -> web.Response:
        return web.json_response(
            {"name": request.match_info["name"], "settings": preset_values(request.match_info["name"])}
        )

    app.router.add_get("/api/settings", schema)
    app.router.add_get("/api/presets", list_presets)
    app.router.add_get("/api/presets/{name}", one_preset)
