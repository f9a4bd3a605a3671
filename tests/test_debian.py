"""The README's two commands, on today's Debian: a fresh Debian 13 root (Python 3.13, where
python-rtmidi has no wheel and pip builds it) made by debootstrap from Debian's own packages,
the README's line of OS packages installed in it, then, on a copy of this repository, the
README's first command (install and write a chorale) and CI's own run (.ci/run: the system
packages the tests need, then the README's test command, the whole suite with its linter and
type checker, on what pip resolves for Python 3.13 today). A failure names the step.

It needs root, debootstrap and the network to Debian's and PyPI's servers: it skips without
them, except with CI=true (.ci/run installs debootstrap), where it fails.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MIRROR = "http://deb.debian.org/debian"
CERT = os.environ.get("PIP_CERT") or "/etc/ssl/certs/ca-certificates.crt"


def readme_lines() -> tuple[str, str]:
    """The README's first command, and its line of Debian packages."""
    readme = (ROOT / "README.md").read_text()
    first = re.search(r"## Install and run.*?```\n(.+?)\n```", readme, re.S)
    packages = re.search(r"^- Debian, Ubuntu: `sudo (apt-get install [^`]+)`", readme, re.M)
    assert first and packages, "the README's install section moved"
    return first.group(1), packages.group(1)


def _unavailable(why: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI runs the README on Debian 13: {why}")
    pytest.skip(why)


def step(what: str, command: list[str], timeout: float, **kwargs) -> str:
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, **kwargs)
    if result.returncode != 0:
        pytest.fail(f"{what} failed (exit {result.returncode}):\n{(result.stdout + result.stderr)[-3000:]}")
    return result.stdout


@pytest.mark.slow
def test_the_readmes_two_commands_pass_on_a_fresh_debian_13(tmp_path):
    if os.environ.get("BACHD_IN_DEBIAN_ROOT"):
        pytest.skip("this run is the README's test command inside the Debian 13 root already")
    if os.geteuid() != 0:
        _unavailable("debootstrap and chroot need root")
    if shutil.which("debootstrap") is None:
        _unavailable("debootstrap is not installed (apt-get install debootstrap)")
    first_command, packages = readme_lines()
    root = tmp_path / "trixie"
    step("debootstrap of Debian 13 (trixie)", ["debootstrap", "--variant=minbase", "trixie", str(root), MIRROR],
         timeout=900)
    # The host's trust, for pip, where no package's own certificates update will replace it.
    shutil.copy(CERT, root / "root/host-ca.crt")
    shutil.copy("/etc/resolv.conf", root / "etc/resolv.conf")
    proc, shm = root / "proc", root / "dev" / "shm"
    subprocess.run(["mount", "-t", "proc", "proc", str(proc)], check=True)
    shm.mkdir(parents=True, exist_ok=True)
    # JACK's and Chromium's shared memory, as a booted system has it.
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(shm)], check=True)
    try:
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root",
               "DEBIAN_FRONTEND": "noninteractive", "PIP_CERT": "/root/host-ca.crt",
               "LANG": "C.UTF-8", "TF_CPP_MIN_LOG_LEVEL": "3"}
        chroot = ["chroot", str(root)]
        version = step("python3 in the root", [*chroot, "sh", "-c", "apt-get update -q && apt-get install -y -q "
                       "--no-install-recommends python3 && python3 --version"], timeout=900, env=env)
        assert "Python 3.13" in version, version
        step(f"the README's Debian packages ({packages})", [*chroot, "sh", "-c",
             f"{packages.replace('apt-get install', 'apt-get install -y -q --no-install-recommends')}"],
             timeout=900, env=env)
        files = step("the repository's files", ["git", "ls-files", "-z"], timeout=60, cwd=ROOT).split("\0")
        for name in filter(None, files):
            if (ROOT / name).is_file():
                target = root / "bachd" / name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / name, target)
        step(f"the README's first command ({first_command})", [*chroot, "sh", "-c", f"cd /bachd && {first_command}"],
             timeout=1800, env=env)
        import mido

        answer = mido.MidiFile(root / "bachd" / "answer.mid")
        assert sum(1 for track in answer.tracks for m in track if m.type == "note_on" and m.velocity) > 20
        shared = ROOT.parent / "shared" / "data"
        if shared.is_dir():  # beside the repository, as CI has it, so the tests that read it run
            shutil.copytree(shared, root / "shared" / "data")
        # The root's own run of the suite skips this test: no Debian root inside the Debian root.
        inside = {**env, "BACHD_IN_DEBIAN_ROOT": "1"}
        output = step("the README's test command, by .ci/run", [*chroot, "sh", "-c", "cd /bachd && bash .ci/run"],
                      timeout=2700, env=inside)
        assert re.search(r"\d+ passed", output), output[-3000:]
    finally:
        for mount in (shm, proc):
            subprocess.run(["umount", "-l", str(mount)], check=False)
        if not (os.path.ismount(proc) or os.path.ismount(shm)):  # a root of gigabytes: not kept by pytest
            shutil.rmtree(root, ignore_errors=True)
