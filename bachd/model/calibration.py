"""A model's melodic-interval calibration: how much more or less often each voice should move
by each interval than the model and its sampler make it, to move as Bach's voices do.

An LSTM sampled note by note, at the temperature and nucleus that keep its chords clean,
writes lines plainer than Bach's: its soprano leaps a 4th or more half as often (4 % of notes
against 8 %), its tenor's 5ths and octaves half as often, and every voice drifts by steps
where Bach's turns back with a leap. A classifier tells the pieces apart by those lines first
(``bachd eval --music --discriminate``). The calibration is a table of nats, one row per
voice and one column per interval from the voice's last note (up to an octave either way;
wider ones share the octave's column), added to the pitch draw of a voice that moves (the
hold-or-move draw is left alone; so a re-struck note is never touched).

It is fit by moment matching (:func:`fit`): generate pieces at the offline defaults, compare
each voice's interval histogram with the training split's, add the log ratio to the table,
and again (half of it, after the first round), a few times; the table is clipped to
``CLIP`` nats, so no interval is forced or forbidden. ``bachd calibrate`` fits it for a
model and stores it in the model file (``bachd.calibration.json``); ``bachd generate`` and
``eval --music`` apply it, scaled by the ``interval_calibration`` setting (0: off). It
belongs to the model and the sampling defaults it was fit at: fit it again after training,
or after changing those defaults.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from bachd.errors import BachdError
from bachd.music import encoding

ENTRY = "bachd.calibration.json"
REACH = 12  # intervals up to an octave each way have their own column
CLIP = 2.0  # nats: the table never makes an interval more than e^2 (7.4) times likelier or rarer
DAMPING = 0.5  # of the log ratio added after the first round
SMOOTHING = 0.5  # added to each histogram bin, so an interval neither set uses gives no infinite ratio

_PITCHES = np.arange(encoding.PITCH_LOW, encoding.PITCH_HIGH + 1)
_ATTACKS = encoding.attack(encoding.PITCH_LOW) + 2 * np.arange(encoding.NUM_PITCHES)


@dataclass(frozen=True)
class Calibration:
    """``table[voice, interval + REACH]``: nats added to the pitch draw of ``voice`` for a note
    ``interval`` semitones from the voice's last one (the unison column stays 0)."""

    table: np.ndarray
    about: dict = field(default_factory=dict)  # how it was fit: corpora, pieces, iterations, the gaps

    def bias(self, voice: int, previous: np.ndarray, strength: float = 1.0) -> Optional[np.ndarray]:
        """(batch, vocab) pitch-draw offsets for ``voice`` after its ``previous`` tokens (batch,);
        None where nothing changes (no strength, or no stream's voice is sounding)."""
        pitches = encoding.token_pitches(np.asarray(previous, dtype=np.int64).reshape(-1))
        sounding = pitches != encoding.SILENT
        if not strength or not sounding.any():
            return None
        intervals = np.clip(_PITCHES[None, :] - pitches[:, None], -REACH, REACH)
        offsets = np.where(sounding[:, None], strength * self.table[voice][intervals + REACH], 0.0)
        bias = np.zeros((pitches.shape[0], encoding.VOCAB_SIZE))
        bias[:, _ATTACKS] = offsets
        return bias

    def to_json(self) -> str:
        return json.dumps({"reach": REACH, "table": np.round(self.table, 4).tolist(), "about": self.about}, indent=1)

    @classmethod
    def from_json(cls, text: str, where: str = "the calibration") -> Calibration:
        try:
            data = json.loads(text)
            table = np.asarray(data["table"], dtype=np.float64)
            reach = int(data["reach"])
        except (ValueError, KeyError, TypeError) as exc:
            raise BachdError(f"{where} is malformed ({exc}); run bachd calibrate again") from None
        if reach != REACH or table.shape != (encoding.NUM_VOICES, 2 * REACH + 1) or not np.isfinite(table).all():
            raise BachdError(f"{where} is malformed (a {table.shape} table, reach {reach}); run bachd calibrate again")
        return cls(np.clip(table, -CLIP, CLIP), dict(data.get("about") or {}))


def interval_histograms(pieces: list[np.ndarray]) -> np.ndarray:
    """(4, 2 * REACH + 1) share of each voice's moves by interval (wider ones counted at the
    octave; re-struck notes, interval 0, left out: the hold-or-move draw decides those)."""
    counts = np.full((encoding.NUM_VOICES, 2 * REACH + 1), SMOOTHING)
    counts[:, REACH] = 0.0
    for tokens in pieces:
        pitches, attacks = encoding.decode_pitches(np.asarray(tokens))
        for voice in range(encoding.NUM_VOICES):
            notes = pitches[attacks[:, voice] & (pitches[:, voice] != encoding.SILENT), voice].astype(np.int64)
            moves = np.diff(notes)
            moves = np.clip(moves[moves != 0], -REACH, REACH)
            np.add.at(counts[voice], moves + REACH, 1.0)
    return counts / counts.sum(axis=1, keepdims=True)


def gap(target: np.ndarray, found: np.ndarray) -> float:
    """How far ``found`` is from ``target``: the mean over voices of the target-weighted
    absolute log ratio (0: the same; 0.1: a tenth too often or too rarely, on average)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(target > 0, np.abs(np.log(target / found)), 0.0)
    return float((target * ratio).sum() / target.shape[0])


def fit(sample: Callable[[int, Calibration], list[np.ndarray]], target: np.ndarray, iterations: int,
        say: Callable[[str], None] = lambda line: None) -> Calibration:
    """The table after ``iterations`` rounds of moment matching: ``sample(round, calibration)``
    gives pieces generated with the calibration so far (fresh ones each round), whose interval
    histograms are moved toward ``target`` (from :func:`interval_histograms`)."""
    table = np.zeros_like(target)
    gaps = []
    for round_ in range(iterations + 1):
        found = interval_histograms(sample(round_, Calibration(table)))
        gaps.append(round(gap(target, found), 4))
        say(f"round {round_}: {gaps[-1]:.4f} nats from the corpus's intervals" + (" (uncalibrated)" if not round_
                                                                                    else ""))
        if round_ == iterations:
            break
        with np.errstate(divide="ignore", invalid="ignore"):
            step = np.where(target > 0, np.log(target / found), 0.0)
        # The whole log ratio the first round; half of it after, where what is left is
        # mostly the noise of a few thousand notes, so the table settles instead of swinging.
        table = np.clip(table + (1.0 if round_ == 0 else DAMPING) * step, -CLIP, CLIP)
        table[:, REACH] = 0.0
    return Calibration(table, {"iterations": iterations, "gaps": gaps})


def read_calibration(path: str | Path) -> Optional[Calibration]:
    """The calibration stored in a .keras model file; None if it has none (or is no zip)."""
    path = Path(path)
    if path.suffix != ".keras" or not path.is_file():
        return None
    try:
        with zipfile.ZipFile(path) as archive:
            if ENTRY not in archive.namelist():
                return None
            text = archive.read(ENTRY).decode("utf-8", errors="replace")
    except (OSError, zipfile.BadZipFile):
        return None
    return Calibration.from_json(text, f"{path}'s calibration")


def write_calibration(path: str | Path, calibration: Calibration) -> None:
    """Store ``calibration`` in the .keras model file, in place of any it had: the file is
    rewritten beside itself and moved over, so a stop halfway leaves the old one whole."""
    path = Path(path)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        with zipfile.ZipFile(path) as source, zipfile.ZipFile(temporary, "w", zipfile.ZIP_DEFLATED) as target:
            for item in source.infolist():
                if item.filename != ENTRY:
                    target.writestr(item, source.read(item.filename))
            target.writestr(ENTRY, calibration.to_json())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
