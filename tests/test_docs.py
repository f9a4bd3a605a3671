"""The documentation: the site builds with ``--strict`` (a broken link, a missing page or a
bad anchor fails), its CLI reference is the typer app's own, and the README is a short front
door whose links all lead somewhere."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import typer

from bachd.cli import app

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """The anchor MkDocs (and GitHub) give a heading: lower case, punctuation dropped, spaces to '-'."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\s-]", "", text)
    return re.sub(r"\s+", "-", text).strip("-")


def anchors(markdown: Path) -> set[str]:
    found, fenced = set(), False
    for line in markdown.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and line.startswith("#"):
            found.add(slug(line.lstrip("#")))
    return found


def broken_links(markdown: Path) -> list[str]:
    broken = []
    for target in LINK.findall(markdown.read_text()):
        if re.match(r"^[a-z]+:", target):
            continue  # https:, mailto:
        path, _, anchor = target.partition("#")
        file = (markdown.parent / path).resolve() if path else markdown
        if not file.exists():
            broken.append(target)
        elif anchor and file.suffix == ".md" and anchor not in anchors(file) and "reference" not in file.parts:
            broken.append(target)
    return broken


def test_the_documentation_site_builds_strictly_with_the_cli_reference_from_the_app(tmp_path):
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"),
                             "-d", str(site)], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    reference = (site / "reference" / "cli" / "index.html").read_text()
    command = typer.main.get_command(app)
    for name, sub in command.commands.items():
        assert f"bachd {name}" in reference, name
        for param in sub.params:
            for option in param.opts:
                if option.startswith("--"):
                    assert option in reference, f"bachd {name} {option}"
    for page in ("live", "figures", "checks", "models", "changelog", "history"):
        assert (site / page / "index.html").is_file(), page
    assert "Keep a Changelog" in (site / "changelog" / "index.html").read_text()


def test_a_broken_link_is_caught(tmp_path):
    page = tmp_path / "page.md"
    (tmp_path / "other.md").write_text("# Other page\n\n## A section, with `code`\n")
    page.write_text("[ok](other.md#a-section-with-code) [gone](missing.md) [bad](other.md#nowhere) [web](https://example.org)\n")
    assert broken_links(page) == ["missing.md", "other.md#nowhere"]


def test_the_readme_is_a_short_front_door_whose_links_resolve():
    readme = ROOT / "README.md"
    assert len(readme.read_text().splitlines()) <= 250
    assert broken_links(readme) == []
    assert broken_links(ROOT / "CHANGELOG.md") == []


def test_the_readme_test_command_is_the_one_ci_runs():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Run the tests", 1)[1]
    command = re.search(r"```\n(.+?)\n```", section, re.S).group(1).strip()
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert command in ci_lines


def test_the_changelog_names_this_version_with_a_date():
    import bachd

    versions = re.findall(r"^## \[(\d+\.\d+\.\d+)\] - (\d{4}-\d{2}-\d{2})$", (ROOT / "CHANGELOG.md").read_text(), re.M)
    assert versions and versions[0][0] == bachd.__version__


def documented_commands() -> list[tuple[str, list[str], bool]]:
    """Every ``bachd ...`` command line the README and the docs show: (file, its words, whether
    it is a whole command from a code block, rather than a mention in the text)."""
    import shlex

    found = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = path.read_text(encoding="utf-8")
        blocks = [block.replace("\\\n", " ") for block in re.findall(r"```[a-z]*\n(.*?)```", text, re.S)]
        mentions = re.findall(r"`((?:\S*/)?bachd [^`]+)`", re.sub(r"```.*?```", "", text, flags=re.S))
        for whole, lines in [(True, "\n".join(blocks).splitlines()), (False, mentions)]:
            for line in lines:
                match = re.match(r"^\s*(?:\S*/)?bachd\s+(.*)$", line)
                if not match or re.match(r"^(\S+:|\|)", match.group(1)):  # bachd's own output, not a command
                    continue
                found.append((path.name, shlex.split(re.split(r"\s+#\s", match.group(1))[0]), whole))
    return found


def test_every_bachd_command_in_the_docs_parses_against_the_app():
    """A command the docs show is one bachd takes: its subcommands exist, and a whole command
    line's options and values parse (``--help`` at the end stops it before it runs)."""
    from typer.testing import CliRunner

    runner = CliRunner()
    commands = documented_commands()
    assert len(commands) > 100
    wrong = []
    for name, words, whole in commands:
        if not whole:  # a mention: the command words up to the first option
            words = [w for w in words[: next((i for i, w in enumerate(words) if w.startswith("-")), len(words))]
                     if re.fullmatch(r"[a-z-]+", w)]
        result = runner.invoke(app, [*words, "--help"])
        if result.exit_code != 0:
            wrong.append(f"{name}: bachd {' '.join(words)}")
    assert not wrong, wrong



def test_every_test_the_troubleshooting_page_names_exists():
    """Each case on the troubleshooting page names the test that reaches it: the test is there."""
    import re

    page = (ROOT / "docs" / "troubleshooting.md").read_text()
    named = set(re.findall(r"`(test_[a-z0-9_]+)`", page))
    defined = {name for path in (ROOT / "tests").glob("test_*.py")
               for name in re.findall(r"^def (test_[a-z0-9_]+)", path.read_text(), re.M)}
    assert len(named) >= 10 and named <= defined, sorted(named - defined)
