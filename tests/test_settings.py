"""Each setting is declared once (bachd.settings): the command line, the presets, the CC
knobs and the sampler take its default, bounds and checks from there."""

import pytest
import typer

from bachd.cli import app
from bachd.errors import BachdError
from bachd.presets import LiveSettings, resolve
from bachd.model.sampling import SamplingConfig
from bachd.settings import SETTINGS, check


def _options(command_name: str) -> dict:
    command = typer.main.get_command(app).commands[command_name]
    return {param.name: param for param in command.params if getattr(param, "opts", [""])[0].startswith("--")}


@pytest.mark.parametrize("command_name", ["run", "generate", "eval"])
def test_command_line_options_take_bounds_and_help_from_the_declaration(command_name):
    options = _options(command_name)
    shared = [name for name in SETTINGS if name in options]
    assert {"temperature", "top_p", "rhythm_temperature", "rng_seed"} <= set(shared)
    for name in shared:
        setting, option = SETTINGS[name], options[name]
        assert option.help == setting.help
        assert (option.min, option.max) == (setting.low, setting.high), name
        if command_name == "generate" and name != "rng_seed":  # run's and eval's None: "from the preset"
            assert option.default == setting.offline_default(), name  # generate writes offline


def test_sampler_and_live_defaults_are_the_declared_ones():
    config, live = SamplingConfig(), LiveSettings()
    for name in ("temperature", "top_p", "rhythm_temperature", "key_pull"):
        assert getattr(config, name) == SETTINGS[name].offline_default()  # SamplingConfig() is for offline use
        assert getattr(live, name) == SETTINGS[name].default
        assert getattr(live.sampling(), name) == getattr(live, name)
    assert SETTINGS["rhythm_temperature"].offline_default() != SETTINGS["rhythm_temperature"].default
    assert config.allow_parallels is SETTINGS["allow_parallels"].default is live.allow_parallels
    for name in SETTINGS:
        assert getattr(live, name) == SETTINGS[name].default


@pytest.mark.parametrize("name, bad", [("temperature", 0.0), ("temperature", 9.0), ("top_p", 1.5),
                                       ("rhythm_temperature", -1.0), ("response_bars", 0), ("velocity", 300)])
def test_one_check_everywhere(name, bad, tmp_path):
    with pytest.raises(BachdError, match=f"--{name.replace('_', '-')} must be"):
        check(name, bad)
    with pytest.raises(BachdError, match=f"command line: key|--{name.replace('_', '-')}"):
        resolve(None, {name: bad})
    preset = tmp_path / "p.toml"
    preset.write_text(f"{name} = {bad!r}\n")
    with pytest.raises(BachdError, match=f"p.toml: key '{name}' must be"):
        resolve(str(preset))
    if name in ("temperature", "top_p", "rhythm_temperature"):
        with pytest.raises(BachdError, match=f"sampling: key '{name}' must be"):
            SamplingConfig(**{name: bad}).validate()


def test_cc_knobs_sweep_inside_the_bounds_and_the_performer_checks_what_it_is_given():
    for name in ("temperature", "response_bars"):
        setting = SETTINGS[name]
        for value in range(128):
            check(name, setting.from_cc(value), "CC")  # every knob position is a valid value
    assert SETTINGS["temperature"].from_cc(127) == pytest.approx(1.8)
    assert SETTINGS["response_bars"].from_cc(0) == 1


def test_velocity_takes_a_number_or_follow_from_any_source():
    assert check("velocity", "64") == 64 and check("velocity", "follow") == "follow"
    with pytest.raises(BachdError, match=r"--velocity must be 1-127 or 'follow'"):
        check("velocity", "loud")
