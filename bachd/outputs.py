"""Output files are checked before any long work starts: a wrong suffix, a directory, or a
place that cannot be written is a one-line error, not a traceback after minutes of work."""

from __future__ import annotations

from pathlib import Path

from bachd.errors import BachdError

MIDI_SUFFIXES = (".mid", ".midi")
SCORE_SUFFIXES = (".musicxml", ".mxl")  # a chorale score (bachd.music.score), wherever bachd writes MIDI


def check_output(path: Path | None, option: str, suffixes: tuple[str, ...] = ()) -> None:
    """Raise a BachdError unless ``path`` (given as ``option``) can be written."""
    if path is None:
        return
    path = Path(path)
    if suffixes and path.suffix.lower() not in suffixes:
        raise BachdError(f"{option} must name a {' or '.join(suffixes)} file, got {path}")
    if path.is_dir():
        raise BachdError(f"{option} {path} is a directory; name a file to write")
    existed = path.exists()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "ab"):
            pass
    except OSError as error:
        raise BachdError(f"cannot write {option} {path}: {error.strerror or error}") from None
    if not existed:
        # Only a check: the command writes it when its work is done. Another process checking
        # the same path (a second training worker) may have removed it already.
        path.unlink(missing_ok=True)
