"""A model's melodic-interval calibration: how much more or less often each voice should move
by each interval than the model and its sampler make it, to move as Bach's voices do.

An LSTM sampled note by note, at the temperature and nucleus that keep its chords clean,
writes lines plainer than Bach's: its soprano leaps a 4th or more half as often (4 % of notes
against 8 %), its tenor's 5ths and octaves half as often, and every voice drifts by steps
where Bach's turns back with a leap. A classifier tells the pieces apart by those lines first
(``bachd eval --music --discriminate``). The calibration is a table of nats, one row per
voice and one column per interval from the voice's last note (up to an octave either way;
wider ones share the octave's column), added to the pitch draw of a voice that moves (the
hold-or-move draw is left alone; so a re-struck note is never touched). A second table does
the same for where the alto, tenor and bass land under the voice above them at that step:
the model keeps its voices closer together than Bach (the upper ones more than an octave
apart a third as often, crossed half as often).

It is fit by moment matching (:func:`fit`): generate pieces at the offline defaults, compare
each voice's interval and spacing histograms with the training split's, add the log ratios
to the tables, and again (half of them, after the first round), a few times; the tables are
clipped to ``CLIP`` nats, so nothing is forced or forbidden. ``bachd calibrate`` fits it for a
model and stores it in the model file (``bachd.calibration.json``); ``bachd generate`` and
``eval --music`` apply it, scaled by the ``interval_calibration`` setting (0: off). It
belongs to the model and the sampling defaults it was fit at: fit it again after training,
or after changing those defaults.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from bachd.errors import BachdError
from bachd.model.sampling import _ATTACKS, _PITCHES
from bachd.music import encoding
from bachd.music.discriminate import melodic_intervals

ENTRY = "bachd.calibration.json"
REACH = 12  # intervals up to an octave each way have their own column
SPACING = (-12, 24)  # below the voice above (a crossing) to two octaves under it: a column each
CLIP = 2.0  # nats: the table never makes an interval more than e^2 (7.4) times likelier or rarer
DAMPING = 0.5  # of the log ratio added after the first round
SMOOTHING = 0.5  # added to each histogram bin, so an interval neither set uses gives no infinite ratio

_SPACINGS = SPACING[1] - SPACING[0] + 1


@dataclass(frozen=True)
class Calibration:
    """``table[voice, interval + REACH]``: nats added to the pitch draw of ``voice`` for a note
    ``interval`` semitones from the voice's last one (the unison column stays 0); and
    ``spacing[voice, below - SPACING[0]]``: nats for a note ``below`` semitones under the
    voice above it at that step (negative: above it, crossed; the soprano's row stays 0)."""

    table: np.ndarray
    about: dict = field(default_factory=dict)  # how it was fit: corpora, pieces, iterations, the gaps
    spacing: np.ndarray = field(default_factory=lambda: np.zeros((encoding.NUM_VOICES, _SPACINGS)))

    def bias(self, voice: int, previous: np.ndarray, strength: float = 1.0,
             upper: Optional[np.ndarray] = None) -> Optional[np.ndarray]:
        """(batch, vocab) pitch-draw offsets for ``voice`` after its ``previous`` tokens (batch,),
        under ``upper`` (batch,), this step's tokens of the voice above; None where nothing
        changes (no strength, or no stream with a note to measure from)."""
        pitches = encoding.token_pitches(np.asarray(previous, dtype=np.int64).reshape(-1))
        sounding = pitches != encoding.SILENT
        above = None
        if voice and upper is not None:
            above = encoding.token_pitches(np.asarray(upper, dtype=np.int64).reshape(-1))
        if not strength or not (sounding.any() or (above is not None and (above != encoding.SILENT).any())):
            return None
        intervals = np.clip(_PITCHES[None, :] - pitches[:, None], -REACH, REACH)
        offsets = np.where(sounding[:, None], self.table[voice][intervals + REACH], 0.0)
        if above is not None:
            below = np.clip(above[:, None] - _PITCHES[None, :], *SPACING)
            spaced = self.spacing[voice][below - SPACING[0]]
            offsets = offsets + np.where((above != encoding.SILENT)[:, None], spaced, 0.0)
        bias = np.zeros((pitches.shape[0], encoding.VOCAB_SIZE))
        bias[:, _ATTACKS] = strength * offsets
        return bias

    def to_json(self) -> str:
        return json.dumps({"reach": REACH, "table": np.round(self.table, 4).tolist(), "spacing_range": list(SPACING),
                           "spacing": np.round(self.spacing, 4).tolist(), "about": self.about}, indent=1)

    @classmethod
    def from_json(cls, text: str, where: str = "the calibration") -> Calibration:
        try:
            data = json.loads(text)
            table = np.asarray(data["table"], dtype=np.float64)
            reach = int(data["reach"])
            spacing = np.asarray(data.get("spacing", np.zeros((encoding.NUM_VOICES, _SPACINGS))), dtype=np.float64)
            spacing_range = tuple(data.get("spacing_range", SPACING))
        except (ValueError, KeyError, TypeError) as exc:
            raise BachdError(f"{where} is malformed ({exc}); run bachd calibrate again") from None
        if (reach != REACH or table.shape != (encoding.NUM_VOICES, 2 * REACH + 1) or spacing_range != SPACING
                or spacing.shape != (encoding.NUM_VOICES, _SPACINGS)
                or not (np.isfinite(table).all() and np.isfinite(spacing).all())):
            raise BachdError(f"{where} is malformed (tables {table.shape} and {spacing.shape}, reach {reach}); run "
                             "bachd calibrate again")
        return cls(np.clip(table, -CLIP, CLIP), dict(data.get("about") or {}), np.clip(spacing, -CLIP, CLIP))


def interval_histograms(pieces: list[np.ndarray]) -> np.ndarray:
    """(4, 2 * REACH + 1) share of each voice's moves by interval (wider ones counted at the
    octave; re-struck notes, interval 0, left out: the hold-or-move draw decides those)."""
    counts = np.full((encoding.NUM_VOICES, 2 * REACH + 1), SMOOTHING)
    counts[:, REACH] = 0.0
    for tokens in pieces:
        pitches, attacks = encoding.decode_pitches(np.asarray(tokens))
        for voice in range(encoding.NUM_VOICES):
            moves = melodic_intervals(pitches, attacks, voice)
            moves = np.clip(moves[moves != 0], -REACH, REACH)
            np.add.at(counts[voice], moves + REACH, 1.0)
    return counts / counts.sum(axis=1, keepdims=True)


def spacing_histograms(pieces: list[np.ndarray]) -> np.ndarray:
    """(4, spacings) share of the alto's, tenor's and bass's moves by how far below the voice
    above they land (clipped to ``SPACING``; the soprano's row is all its first column, unused)."""
    counts = np.full((encoding.NUM_VOICES, _SPACINGS), SMOOTHING)
    counts[0] = 0.0
    counts[0, 0] = 1.0
    for tokens in pieces:
        pitches, attacks = encoding.decode_pitches(np.asarray(tokens))
        for voice in range(1, encoding.NUM_VOICES):
            mine, above = pitches[:, voice], pitches[:, voice - 1]
            before = np.concatenate([[encoding.SILENT], mine[:-1]])
            moves = attacks[:, voice] & (mine != encoding.SILENT) & (mine != before) & (above != encoding.SILENT)
            below = np.clip(above[moves].astype(np.int64) - mine[moves], *SPACING)
            np.add.at(counts[voice], below - SPACING[0], 1.0)
    return counts / counts.sum(axis=1, keepdims=True)


def gap(target: np.ndarray, found: np.ndarray) -> float:
    """How far ``found`` is from ``target``: the mean over voices of the target-weighted
    absolute log ratio (0: the same; 0.1: a tenth too often or too rarely, on average)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(target > 0, np.abs(np.log(target / found)), 0.0)
    return float((target * ratio).sum() / target.shape[0])


def _step(target: np.ndarray, found: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(target > 0, np.log(target / found), 0.0)


def fit(sample: Callable[[int, Calibration], list[np.ndarray]], target: tuple[np.ndarray, np.ndarray],
        iterations: int, say: Callable[[str], None] = lambda line: None) -> Calibration:
    """The tables after ``iterations`` rounds of moment matching: ``sample(round, calibration)``
    gives pieces generated with the calibration so far (fresh ones each round), whose interval
    and spacing histograms are moved toward ``target`` (from :func:`interval_histograms` and
    :func:`spacing_histograms` of the corpus)."""
    lines, spacing = target
    table, under = np.zeros_like(lines), np.zeros_like(spacing)
    gaps = []
    for round_ in range(iterations + 1):
        pieces = sample(round_, Calibration(table, spacing=under))
        found_lines, found_spacing = interval_histograms(pieces), spacing_histograms(pieces)
        gaps.append([round(gap(lines, found_lines), 4), round(gap(spacing[1:], found_spacing[1:]), 4)])
        say(f"round {round_}: {gaps[-1][0]:.4f} nats from the corpus's intervals, {gaps[-1][1]:.4f} from its "
            "spacing" + (" (uncalibrated)" if not round_ else ""))
        if round_ == iterations:
            break
        # The whole log ratio the first round; half of it after, where what is left is
        # mostly the noise of a few thousand notes, so the tables settle instead of swinging.
        rate = 1.0 if round_ == 0 else DAMPING
        table = np.clip(table + rate * _step(lines, found_lines), -CLIP, CLIP)
        table[:, REACH] = 0.0
        under = np.clip(under + rate * _step(spacing, found_spacing), -CLIP, CLIP)
        under[0] = 0.0
    return Calibration(table, {"iterations": iterations, "gaps": gaps}, under)


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
        shutil.copymode(path, temporary)  # the model keeps its permissions (a temporary file is private)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
