"""A systemd user unit for ``bachd run``, so a studio machine gets bachd back by itself.

bachd exits non-zero when its MIDI system goes away (the JACK server restarted, a port
unplugged) or fails to start (no server yet); with ``Restart=on-failure`` systemd starts it
again three seconds later. A unit that fails ten times in five minutes (a MIDI system that
is not coming back, a port name another program holds) is left stopped, and the journal
holds bachd's one line for each try: ``journalctl --user -u bachd``.
"""

from __future__ import annotations

import shlex
import shutil
import sys
from pathlib import Path

UNIT_TEMPLATE = """\
[Unit]
Description=bachd: live Bach chorales on virtual MIDI ports
After=sound.target jack.service
# Try again while the MIDI system comes back; give up after ten failures in five minutes.
StartLimitIntervalSec=300
StartLimitBurst=10

[Service]
ExecStart={command}
Restart=on-failure
RestartSec=3
# Ctrl-C's twin: bachd releases every note before it exits.
KillSignal=SIGTERM
TimeoutStopSec=10

[Install]
WantedBy=default.target
"""


def bachd_command() -> list[str]:
    """How to start this bachd: its console script if installed beside this Python."""
    script = shutil.which("bachd", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "bachd"]


def unit_text(run_args: list[str]) -> str:
    """The unit for ``bachd run RUN_ARGS``."""
    command = " ".join(shlex.quote(part) for part in [*bachd_command(), "run", "--no-status", *run_args])
    return UNIT_TEMPLATE.format(command=command)
