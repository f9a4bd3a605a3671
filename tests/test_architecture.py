"""bachd's layout holds: each subpackage imports only the layers below it, no module imports
another that imports it back (directly or round a circle), and the live path's pure logic
loads neither TensorFlow nor rtmidi.

Every import counts: at the top of a module, inside a function, under ``TYPE_CHECKING``."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import bachd

PACKAGE = Path(bachd.__file__).resolve().parent

# Lower layers never import higher ones: music <- sound <- model <- presets <- live <- files <- web <- cli.
LAYERS = {
    "bachd": 0, "bachd.errors": 0, "bachd.deadline": 0, "bachd.settings": 0, "bachd.paths": 0, "bachd.outputs": 0,
    "bachd.quiet": 0, "bachd.midi": 0, "bachd.registry": 0,
    "bachd.music": 1,
    "bachd.sound": 2,
    "bachd.model": 3,
    "bachd.presets": 4,
    "bachd.live": 5,
    "bachd.files": 6,
    "bachd.web": 7,
    "bachd.cli": 8, "bachd.__main__": 8,
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def layer(module: str) -> int:
    while module not in LAYERS:
        module = module.rpartition(".")[0]
    return LAYERS[module]


def imports(module: str) -> set[str]:
    """The bachd modules ``module`` imports, anywhere in its text."""
    found = set()
    for node in ast.walk(ast.parse(MODULES[module].read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "bachd")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.split(".")[0] == "bachd":
            for alias in node.names:
                child = f"{node.module}.{alias.name}"
                found.add(child if child in MODULES else node.module)
    return {m for m in found if m in MODULES and m != module}


GRAPH = {m: imports(m) for m in MODULES}


def test_every_module_belongs_to_a_layer_and_the_top_level_stays_small():
    top = sorted(m for m in MODULES if m.count(".") == 1 and not MODULES[m].name == "__init__.py")
    assert top == ["bachd.__main__", "bachd.cli", "bachd.deadline", "bachd.errors", "bachd.midi", "bachd.outputs",
                   "bachd.paths", "bachd.presets", "bachd.quiet", "bachd.registry", "bachd.settings"], top
    for module in MODULES:
        layer(module)  # raises KeyError for a module outside every layer


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return [f"{m} -> {t}" for m, targets in sorted(graph.items()) for t in sorted(targets) if layer(t) > layer(m)]


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components of more than one module."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


def test_no_module_imports_a_higher_layer():
    assert upward_imports(GRAPH) == []


def test_there_are_no_import_circles():
    assert circles(GRAPH) == []


def test_the_checks_see_real_imports_and_would_catch_a_wrong_one():
    # The graph is read from the source: a module's known imports are in it.
    assert "bachd.music.encoding" in GRAPH["bachd.live.performer"]
    assert "bachd.model.streaming" in GRAPH["bachd.model.tf_engine"]
    assert "bachd.live.modes" in GRAPH["bachd.live.harmonizer"]
    # The music importing the live path, and the mode contract importing the performer that imports it.
    wrong = dict(GRAPH)
    wrong["bachd.music.keys"] = GRAPH["bachd.music.keys"] | {"bachd.live.stream"}
    assert upward_imports(wrong) == ["bachd.music.keys -> bachd.live.stream"]
    wrong["bachd.live.modes"] = GRAPH["bachd.live.modes"] | {"bachd.live.performer"}
    assert any({"bachd.live.modes", "bachd.live.performer"} <= set(c) for c in circles(wrong))


def test_live_logic_modules_do_not_import_tensorflow_or_rtmidi():
    code = ("import sys; import bachd.live.clock, bachd.live.scheduler, bachd.live.performer, bachd.live.router, "
            "bachd.live.session, bachd.live.stream, bachd.model.sampling, bachd.model.engine, bachd.music.encoding, "
            "bachd.presets; "
            "bad = [m for m in ('tensorflow', 'rtmidi', 'keras') if m in sys.modules]; print(bad); sys.exit(bool(bad))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_bachd_run_without_ui_loads_no_web_code():
    """What ``bachd run`` imports (the command line and the daemon, ports, engine, recorder)
    brings in neither aiohttp nor bachd.web, nor notation (music21, Verovio, the score
    writer): the control surface and scores cost nothing unless asked for."""
    code = ("import sys, bachd.cli, bachd.live.daemon, bachd.live.ports, bachd.model.engine, bachd.live.recorder; "
            "bad = [m for m in sys.modules if m in ('aiohttp', 'music21', 'verovio') or m.startswith('bachd.web') "
            "or m in ('bachd.music.score', 'bachd.music.roman', 'bachd.music.engrave')]; print(bad); sys.exit(bool(bad))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert [m for m, targets in GRAPH.items() if any(t.startswith("bachd.web") for t in targets) and not m.startswith("bachd.web")] == ["bachd.cli"]


def test_the_registries_name_real_classes_in_their_own_layers():
    """The registries (bachd.registry) name their entries by text, imported on first use; each
    names a class that exists, in the layer of what it is (modes and clocks live, engines model)."""
    from bachd.registry import CLOCKS, ENGINES, MODES

    for registry, package in ((MODES, "bachd.live"), (CLOCKS, "bachd.live"), (ENGINES, "bachd.model")):
        for name in registry:
            target = registry.spec(name)
            assert isinstance(target, str) and target.startswith(package + "."), (name, target)
            module = target.partition(":")[0]
            assert module in MODULES and layer(module) == LAYERS[package]
    for name in MODES:
        assert MODES[name].name == name
    for name in CLOCKS:
        assert CLOCKS[name].name == name
