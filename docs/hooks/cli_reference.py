"""MkDocs hook: the reference pages are written from the code at build time, so they cannot
drift from it: the CLI reference from the typer app (what ``bachd --help`` says), the
settings table from :mod:`bachd.settings` and the controller defaults from
:mod:`bachd.presets`."""

from __future__ import annotations

from pathlib import Path

MARKER = "<!-- bachd-cli-reference -->"
SETTINGS_MARKER = "<!-- bachd-settings-table -->"
ROOT = Path(__file__).resolve().parents[2]


def cli_reference() -> str:
    import typer
    from typer.cli import get_docs_for_click

    from bachd.cli import app

    command = typer.main.get_command(app)
    return get_docs_for_click(obj=command, ctx=typer.Context(command, info_name="bachd"), name="bachd",
                              title="CLI reference")


def _value(value) -> str:
    if value is None:
        return "not set"
    if isinstance(value, bool):
        return str(value).lower()
    if value == "":
        return "empty"
    return f"`{value}`" if isinstance(value, str) else f"{value:g}" if isinstance(value, float) else str(value)


def settings_table() -> str:
    from bachd.presets import CC_ROLES, _cc_defaults
    from bachd.settings import SETTINGS

    rows = ["| key | default live | offline | values | while playing | what it does |", "|---|---|---|---|---|---|"]
    cc = _cc_defaults()
    for name, setting in SETTINGS.items():
        if setting.choices:
            values = " / ".join(f"`{c}`" for c in setting.choices)
        elif setting.kind is bool:
            values = "true / false"
        elif setting.low is not None:
            values = f"{setting.low:g}–{setting.high:g}" + "".join(f" or `{a}`" for a in setting.also)
        else:
            values = setting.kind.__name__
        offline = _value(setting.offline) if setting.offline is not None else ""
        knob = f"CC {cc[name]} sweeps {setting.cc_range[0]:g}–{setting.cc_range[1]:g}" if setting.cc_range and cc.get(name) else ""
        if setting.live:
            knob = "panel" + (f"; {knob}" if knob else "")
        rows.append(f"| `{name}` | {_value(setting.default)} | {offline} | {values} | {knob} | {setting.help} |")
    roles = ", ".join(f"`{role}` ({cc[role]})" for role in CC_ROLES)
    return "\n".join(rows) + f"\n\nThe `[cc]` table assigns the controllers, 0–119 or `\"off\"`: {roles}."


def on_page_markdown(markdown: str, page, config, files) -> str:
    if MARKER in markdown:
        markdown = markdown.replace(MARKER, cli_reference())
    if SETTINGS_MARKER in markdown:
        markdown = markdown.replace(SETTINGS_MARKER, settings_table())
    return markdown
