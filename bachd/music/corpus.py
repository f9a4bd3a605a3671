"""Chorale corpora: music21's Bach chorales, the JSB and JS Fake Chorales files, MIDI folders.

Every loader returns :class:`Piece` objects holding (T, 4) token arrays. Loading is
deterministic and cached; a file that cannot be read is reported by name and skipped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from bachd.errors import BachdError
from bachd.music import encoding
from bachd.music.barlines import WEIGHTS, estimate_phase

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
BACH = "bach"
_CACHE_VERSION = 2  # 2: phases within the bar, and bar lengths


@dataclass
class Piece:
    name: str
    tokens: np.ndarray  # (T, 4) int16
    split: str
    phase: int = 0  # where step 0 falls within its bar, in steps (12 after a one-beat 4/4 pickup)
    bar_steps: int = encoding.STEPS_PER_BAR  # 16 for 4/4, 12 for 3/4

    @property
    def steps(self) -> int:
        return int(self.tokens.shape[0])


@dataclass
class Corpus:
    spec: str
    pieces: list[Piece]
    skipped: list[str]

    def split(self, name: str) -> list[Piece]:
        return [p for p in self.pieces if p.split == name]


def cache_dir() -> Path:
    base = os.environ.get("BACHD_CACHE_DIR") or os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    path = Path(base).expanduser()
    return path if os.environ.get("BACHD_CACHE_DIR") else path / "bachd"


def hash_split(name: str) -> str:
    """A piece's split from its name alone: 80 % train, 10 % valid, 10 % test."""
    bucket = int(hashlib.sha1(name.encode()).hexdigest(), 16) % 100
    return "train" if bucket < 80 else "valid" if bucket < 90 else "test"


def load_corpora(specs: list[str], allow_pickle: bool = False) -> list[Corpus]:
    return [load_corpus(spec, allow_pickle=allow_pickle) for spec in specs]


def load_corpus(spec: str, allow_pickle: bool = False) -> Corpus:
    """Load ``bach`` (music21's chorales), a .json/.npz file or a folder of MIDI files."""
    if spec == BACH:
        return _cached(spec, _music21_fingerprint(), _load_bach)
    path = Path(spec).expanduser()
    if not path.exists():
        raise BachdError(f"corpus {spec!r} does not exist (use 'bach' or a .json/.npz file or a MIDI folder)")
    if path.is_dir():
        files = midi_files(path)
        if not files:
            raise BachdError(f"corpus folder {spec} holds no .mid files")
        fingerprint = [(str(f.relative_to(path)), f.stat().st_size, f.stat().st_mtime_ns) for f in files]
        corpus = _cached(str(path.resolve()), fingerprint, lambda: load_midi_files(path, files))
    elif path.suffix.lower() == ".json":
        corpus = _cached(str(path.resolve()), _file_fingerprint(path), lambda: _load_json(path))
    elif path.suffix.lower() == ".npz":
        corpus = _load_npz(path, allow_pickle)
    else:
        raise BachdError(f"corpus {spec}: expected a .json or .npz file or a folder of MIDI files")
    if not corpus.pieces:
        raise BachdError(f"corpus {spec} holds no usable pieces")
    return corpus


def _file_fingerprint(path: Path) -> list:
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns]


def _music21_fingerprint() -> list:
    import music21

    return [music21.__version__]


def _cached(spec: str, fingerprint: list, load) -> Corpus:
    """Load through an npz cache keyed by the source and its fingerprint (no pickle)."""
    # The estimated bar lines are cached too: the estimator's weights are part of the key.
    key = hashlib.sha1(
        json.dumps([_CACHE_VERSION, encoding.REPRESENTATION_VERSION, spec, fingerprint, WEIGHTS.tolist()]).encode()
    )
    path = cache_dir() / f"corpus-{key.hexdigest()[:16]}.npz"
    if path.exists():
        try:
            return _read_cache(spec, path)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            log.warning("ignoring unreadable corpus cache %s", path)
    corpus = load()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp.npz")
        lengths = np.array([p.steps for p in corpus.pieces], dtype=np.int64)
        tokens = np.concatenate([p.tokens for p in corpus.pieces]) if corpus.pieces else np.zeros((0, 4), np.int16)
        np.savez(
            tmp,
            tokens=tokens.astype(np.int16),
            lengths=lengths,
            names=np.array([p.name for p in corpus.pieces], dtype=str),
            splits=np.array([p.split for p in corpus.pieces], dtype=str),
            phases=np.array([p.phase for p in corpus.pieces], dtype=np.int64),
            bar_steps=np.array([p.bar_steps for p in corpus.pieces], dtype=np.int64),
            skipped=np.array(corpus.skipped, dtype=str),
        )
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("could not write corpus cache %s: %s", path, exc)
    return corpus


def _read_cache(spec: str, path: Path) -> Corpus:
    with np.load(path, allow_pickle=False) as data:
        bounds = np.concatenate([[0], np.cumsum(data["lengths"])])
        pieces = [
            Piece(str(name), data["tokens"][bounds[i] : bounds[i + 1]].copy(), str(split), int(phase), int(bar))
            for i, (name, split, phase, bar) in enumerate(
                zip(data["names"], data["splits"], data["phases"], data["bar_steps"])
            )
        ]
        return Corpus(spec, pieces, [str(s) for s in data["skipped"]])


def _piece_from_pitches(name: str, pitches, split: str | None, skipped: list[str], attacks=None, phase=None,
                        bar_steps=encoding.STEPS_PER_BAR):
    """A piece, or None with the reason in ``skipped``. Without a ``phase`` (arrays that carry
    no bar lines), where the bar falls is estimated from the music (:mod:`bachd.music.barlines`)."""
    try:
        tokens = encoding.encode_pitches(np.asarray(pitches, dtype=np.float64), attacks)
    except ValueError as exc:
        skipped.append(f"{name}: {exc}")
        return None
    if tokens.shape[0] < 2:
        skipped.append(f"{name}: too short")
        return None
    if phase is None:
        phase = estimate_phase(tokens)
    return Piece(name, tokens, split or hash_split(name), phase, bar_steps)


def _load_json(path: Path) -> Corpus:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BachdError(f"corpus {path}: not a readable JSON file ({exc})") from None
    if not isinstance(data, dict) or not any(k in data for k in SPLITS):
        raise BachdError(f"corpus {path}: expected a JSON object with 'train'/'valid'/'test' lists of pieces")
    return _from_groups(path, [(split, data.get(split, [])) for split in SPLITS])


def _from_groups(path: Path, groups) -> Corpus:
    """Pieces from (split, list of (steps, 4) pitch arrays with negatives or NaN for silence)."""
    pieces: list[Piece] = []
    skipped: list[str] = []
    for split, items in groups:
        for index, raw in enumerate(items):
            name = f"{path.stem}/{split or 'piece'}/{index}"
            try:
                pitches = np.asarray(raw, dtype=np.float64).reshape(-1, encoding.NUM_VOICES)
            except (TypeError, ValueError):
                skipped.append(f"{name}: not a (steps, 4) pitch array")
                continue
            piece = _piece_from_pitches(name, np.where(pitches < 0, np.nan, pitches), split, skipped)
            if piece:
                pieces.append(piece)
    return Corpus(str(path), pieces, skipped)


def _load_npz(path: Path, allow_pickle: bool) -> Corpus:
    try:
        archive = np.load(path, allow_pickle=allow_pickle, encoding="latin1")
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise BachdError(f"corpus {path}: not a readable .npz file ({exc})") from None
    with archive:
        keys = list(archive.keys())
        try:
            if "pitches" in keys:  # JS Fake Chorales: no split of its own
                groups: list[tuple[Optional[str], Any]] = [(None, archive["pitches"])]
            elif any(k in keys for k in SPLITS):
                groups = [(k, archive[k]) for k in SPLITS if k in keys]
            else:
                raise BachdError(f"corpus {path}: expected keys train/valid/test or pitches, found {keys}")
        except ValueError as exc:
            if "allow_pickle" in str(exc):
                raise BachdError(
                    f"corpus {path} stores Python objects, and loading it would run pickle, which can "
                    "execute code from the file; pass --allow-pickle if you trust it, or use the .json version"
                ) from None
            raise BachdError(f"corpus {path}: {exc}") from None
        return _from_groups(path, groups)


def midi_files(folder: Path) -> list[Path]:
    """Every .mid/.midi file under ``folder``, in a stable order."""
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".mid", ".midi"))


def load_midi_files(root: Path, files: list[Path]) -> Corpus:
    """Four-voice pieces from MIDI ``files`` (named relative to ``root``); a file that cannot
    be read or has fewer than four voices is listed in ``skipped``."""
    from bachd.music.midifile import read_midi

    pieces: list[Piece] = []
    skipped: list[str] = []
    for file in files:
        name = str(file.relative_to(root))
        try:
            pitches, attacks, voices = read_midi(file)
        except BachdError as exc:
            skipped.append(str(exc))
            continue
        if voices < encoding.NUM_VOICES:
            skipped.append(f"{name}: {voices} voice(s) found, four needed")
            continue
        piece = _piece_from_pitches(name, np.where(pitches < 0, np.nan, pitches), None, skipped, attacks, phase=0)
        if piece:
            pieces.append(piece)
    return Corpus(str(root), pieces, skipped)


def _load_bach() -> Corpus:
    from music21 import corpus as m21corpus

    names = list(m21corpus.chorales.Iterator(returnType="filename"))
    pieces: list[Piece] = []
    skipped: list[str] = []
    log.info("parsing %d chorales from music21 (once; cached in %s)", len(names), cache_dir())
    workers = min(4, os.cpu_count() or 1)
    if workers > 1:
        import multiprocessing

        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            results = pool.map(_parse_chorale, names, chunksize=8)
    else:
        results = [_parse_chorale(name) for name in names]
    for name, result in zip(names, results):
        if isinstance(result, str):
            skipped.append(f"{name}: {result}")
            continue
        pitches, attacks, phase, bar_steps = result
        piece = _piece_from_pitches(name, pitches, None, skipped, attacks, phase, bar_steps)
        if piece:
            pieces.append(piece)
    return Corpus(BACH, pieces, skipped)


def _parse_chorale(name: str):
    """(pitches, attacks, phase, bar_steps) of one music21 chorale, or a reason it was skipped."""
    from music21 import corpus as m21corpus

    try:
        return score_to_pitches(m21corpus.parse(name))
    except Exception as exc:  # music21 raises many kinds; one bad chorale must not stop the rest
        return f"could not parse ({type(exc).__name__}: {exc})"


_PART_PREFIXES = (("sopr", "s."), ("alt", "a."), ("ten", "t."), ("bass", "b."))


def pick_satb(score) -> list | str:
    """The soprano, alto, tenor and bass parts of a music21 score, by name, or a reason."""
    parts = list(score.parts)
    chosen: list = [None] * 4
    for part in parts:
        voice = _voice_of(part)
        if voice is not None and chosen[voice] is None:
            chosen[voice] = part
    if any(p is None for p in chosen):
        if len(parts) == 4:  # four parts without voice names: take them top to bottom
            return parts
        return "no soprano, alto, tenor and bass parts"
    return chosen


def _voice_of(part) -> int | None:
    name = str(part.partName or part.id or "").strip().lower()
    for voice, prefixes in enumerate(_PART_PREFIXES):
        if name.startswith(prefixes):
            return voice
    return None


def score_to_pitches(score) -> tuple[np.ndarray, np.ndarray, int, int] | str:
    """A music21 score → (pitches, attacks, phase, bar_steps) on the 16th grid; ties give
    holds; ``phase`` is where the first step falls within its bar of ``bar_steps``."""
    parts = pick_satb(score)
    if isinstance(parts, str):
        return parts
    return parts_to_pitches(score, parts, encoding.VOICE_SLOTS[4])


def parts_to_pitches(score, parts: list, slots: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, int, int] | str:
    """The given music21 parts placed in voice ``slots``; the other voices stay silent."""
    total_steps = int(round(float(score.highestTime) * encoding.STEPS_PER_BEAT))
    if total_steps < 2:
        return "empty score"
    pitches = np.full((total_steps, 4), np.nan)
    attacks = np.zeros((total_steps, 4), dtype=bool)
    for voice, part in zip(slots, parts):
        for element in part.flatten().notes:
            length = float(element.duration.quarterLength)
            if length <= 0:  # grace notes take no time on the grid
                continue
            offset = float(element.offset)
            start = int(round(offset * encoding.STEPS_PER_BEAT))
            end = max(start + 1, int(round((offset + length) * encoding.STEPS_PER_BEAT)))
            pitch = max(p.midi for p in element.pitches) if voice < 2 else min(p.midi for p in element.pitches)
            pitches[start:end, voice] = encoding.fold_pitch(pitch)
            tie = element.tie
            attacks[start, voice] = tie is None or tie.type == "start"
    phase, bar_steps = 0, encoding.STEPS_PER_BAR
    measures = parts[0].getElementsByClass("Measure")
    if measures:
        signature = measures[0].timeSignature or measures[0].getContextByClass("TimeSignature")
        if signature is not None:
            bar_steps = encoding.bar_period(round(float(signature.barDuration.quarterLength) * encoding.STEPS_PER_BEAT))
        phase = int(round(float(measures[0].paddingLeft) * encoding.STEPS_PER_BEAT)) % bar_steps
    return pitches, attacks, phase, bar_steps

