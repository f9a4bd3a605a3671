"""A MusicXML score engraved: SVG pages by Verovio (a wheel on PyPI, no other program), PDF by
MuseScore 3 when it is installed (``mscore3``, Debian's ``musescore3``).

The SVG is made for a page of bachd's own: Verovio's inline ``<style>`` (cosmetic: bold tempo
marks, italic bar numbers, hidden placeholders) is taken out, since the pages' policy allows
no inline style; those rules are in ``bachd/web/assets/bachd.css``. The timemap says which
notes sound from which millisecond, for a cursor that follows the audio.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Optional

from bachd.errors import BachdError

MUSESCORE = ("mscore3", "musescore3", "mscore", "musescore")
STYLE = re.compile(r"<style[^>]*>.*?</style>", re.DOTALL)


def _toolkit(musicxml: str, width: int):
    try:
        import verovio
    except ImportError:
        raise BachdError("engraving needs verovio (pip install verovio)") from None
    from importlib.resources import files

    toolkit = verovio.toolkit(False)
    # Verovio keeps its default resource path per thread; the studio engraves on its job thread.
    if not toolkit.setResourcePath(str(files("verovio") / "data")):  # type: ignore[func-returns-value]  # stubs say None
        raise BachdError("Verovio's fonts are missing from its package; reinstall verovio")
    toolkit.setOptions({"pageWidth": width, "adjustPageHeight": True, "footer": "none", "scale": 40,
                        "breaks": "auto", "svgViewBox": True, "svgRemoveXlink": True})
    if not toolkit.loadData(musicxml):
        raise BachdError("Verovio could not read the score")
    return toolkit


def svg_pages(musicxml: str, width: int = 2100) -> list[str]:
    """Every page of the score as an SVG document, without inline style."""
    toolkit = _toolkit(musicxml, width)
    return [STYLE.sub("", toolkit.renderToSVG(page)) for page in range(1, toolkit.getPageCount() + 1)]


def engraved(musicxml: str, width: int = 2100) -> tuple[str, list[tuple[int, list[str]]]]:
    """The whole score as one SVG (all its systems), and its timemap: (milliseconds, the ids
    of the notes that start then), at the score's tempo."""
    toolkit = _toolkit(musicxml, width)
    toolkit.setOptions({"breaks": "auto", "adjustPageHeight": True, "pageHeight": 60000})
    toolkit.redoLayout()
    svg = STYLE.sub("", toolkit.renderToSVG(1))
    timemap = [
        (int(entry["tstamp"]), list(entry.get("on", []))) for entry in toolkit.renderToTimemap() if entry.get("on")
    ]
    return svg, timemap


def musescore() -> Optional[str]:
    return next((shutil.which(name) for name in MUSESCORE if shutil.which(name)), None)


def require_musescore() -> str:
    """MuseScore's program, or the one-line refusal that says what to install."""
    program = musescore()
    if program is None:
        raise BachdError("a PDF needs MuseScore 3 (Debian and Ubuntu: apt-get install musescore3); "
                         "an .svg or .musicxml needs nothing more")
    return program


def write_pdf(musicxml: Path, pdf: Path, timeout: float = 120.0) -> Path:
    """Engrave ``musicxml`` to ``pdf`` with MuseScore, headless."""
    program = require_musescore()
    try:
        done = subprocess.run([program, "-o", str(pdf), str(musicxml)], capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    except subprocess.TimeoutExpired:
        raise BachdError(f"MuseScore took longer than {timeout:g} s to engrave the score") from None
    if done.returncode != 0 or not pdf.exists():
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise BachdError(f"MuseScore could not engrave the score: {last}")
    return pdf
