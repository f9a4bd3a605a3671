"""``bachd eval``: a model's figures on a split of a corpus (:mod:`bachd.model.metrics`)
and, with ``--music``, the musical checks of pieces it generates (or of MIDI files) against
the split's chorales (:mod:`bachd.music.analysis`).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np

from bachd.errors import BachdError
from bachd.model.calibration import Calibration, read_calibration
from bachd.model.keras_model import load_model
from bachd.model.metrics import evaluate_pieces
from bachd.model.sampling import Sampler, SamplingConfig
from bachd.music.meter import COMMON_TIME


def generated_pieces(model, pieces: int, steps: int, sampling: SamplingConfig, rng_seed: int | None,
                     with_bars: bool = False, calibration: Calibration | None = None):
    """``pieces`` pieces of ``steps`` steps sampled from the model from nothing (one batch);
    ``with_bars``: also each one's (phase, bar steps), where generation put the bar lines.
    The model's interval calibration is ``calibration``, or the one in the model file when
    ``model`` is a path."""
    from bachd.files.generation import generate
    from bachd.model.engine import make_engine

    engine = make_engine(model, batch_size=pieces)
    if calibration is None and isinstance(model, (str, Path)):
        calibration = read_calibration(model)
    result = generate(engine, Sampler(sampling, rng_seed=rng_seed), None, steps, calibration=calibration)
    tokens = [result.tokens[k] for k in range(pieces)]
    if not with_bars:
        return tokens
    return tokens, [(result.phase, COMMON_TIME.steps_per_bar)] * pieces


def eval_report(
    model: Path, corpora: list[str], split: str, allow_pickle: bool = False, plot: Path | None = None,
    music_pieces: int = 0, bars: int = 16, sampling: SamplingConfig = SamplingConfig(), rng_seed: int | None = 0,
    discriminator: bool = False,
) -> dict:
    """What ``bachd eval`` reports: the model's figures on a split of ``corpora`` and, with
    ``music_pieces``, musical checks of that many generated pieces (or, when ``model`` is a
    MIDI file or folder, of those files) against the split's chorales."""
    from bachd.music.corpus import load_corpora

    is_midi = model.is_dir() or model.suffix.lower() in (".mid", ".midi")
    if is_midi and not music_pieces:
        raise BachdError(f"{model} is MIDI: pass --music to check it against the chorales")
    samples, sample_bars = midi_samples(model) if is_midi else (None, None)
    loaded = None if is_midi else load_model(model)
    chosen = [p for c in load_corpora(corpora, allow_pickle=allow_pickle) for p in c.split(split)]
    if not chosen:
        raise BachdError(f"the {split} split of {', '.join(corpora)} is empty")
    where = f"{', '.join(corpora)} ({split}, {len(chosen)} pieces)"
    figures: dict = {"model": str(model), "split": split, "corpora": corpora, "pieces": len(chosen), "where": where}
    if loaded is not None:
        figures.update(evaluate_pieces(loaded, chosen))
        if plot is not None:
            from bachd.sound.plots import eval_chart

            eval_chart(figures, plot, title=f"{model.name} on {where}")
    if music_pieces:
        if samples is None:
            samples, sample_bars = generated_pieces(
                loaded, music_pieces, COMMON_TIME.bars(bars), sampling, rng_seed, with_bars=True,
                calibration=read_calibration(model),
            )
            figures["generation"] = {"pieces": music_pieces, "bars": bars, **asdict(sampling), "rng_seed": rng_seed}
            del figures["generation"]["voice_ranges"]
        figures["music"] = music_report(
            samples, [p.tokens for p in chosen], sample_bars, [(p.phase, p.bar_steps) for p in chosen]
        )
        if discriminator:
            figures["discriminator"] = discriminator_report(samples, sample_bars, chosen)
    return figures


def discriminator_report(samples: list[np.ndarray], sample_bars, chosen) -> dict:
    """How well two classifiers tell ``samples`` from the split's chorales cut to their length
    (:mod:`bachd.music.discriminate`)."""
    from bachd.music import analysis
    from bachd.music.discriminate import discriminate

    length = int(np.median([s.shape[0] for s in samples]))
    cut, cut_bars, _ = analysis.crops([p.tokens for p in chosen], length, [(p.phase, p.bar_steps) for p in chosen])
    try:
        return discriminate(samples, cut, sample_bars, cut_bars)
    except ValueError as exc:
        raise BachdError(f"--discriminate: {exc}") from None


def midi_samples(path: Path) -> tuple[list[np.ndarray], list[tuple[int, int]]]:
    """The four-voice token arrays of a MIDI file or of every MIDI file in a folder, and each
    one's (phase, bar steps)."""
    from bachd.music.corpus import load_midi_files, midi_files

    files = midi_files(path) if path.is_dir() else [path]
    if not files:
        raise BachdError(f"{path} holds no .mid files")
    loaded = load_midi_files(path if path.is_dir() else path.parent, files)
    if loaded.skipped:
        raise BachdError(loaded.skipped[0])
    return [piece.tokens for piece in loaded.pieces], [(piece.phase, piece.bar_steps) for piece in loaded.pieces]


def music_report(samples: list[np.ndarray], reference: list[np.ndarray], sample_bars=None, reference_bars=None) -> dict:
    """Musical figures of ``samples`` and of ``reference`` (real chorales, cut to the samples'
    length so that per-piece figures compare), with the margin check of each figure. With
    each one's (phase, bar steps), the phrase ends as heard take their strong beats from the
    bar lines."""
    from bachd.music import analysis

    length = int(np.median([s.shape[0] for s in samples]))
    if reference_bars is None or sample_bars is None:
        corpus = analysis.measure(analysis.crops(reference, length))
        model = analysis.measure(samples)
    else:
        cut, cut_bars, homes = analysis.crops(reference, length, reference_bars)
        corpus = analysis.measure(cut, cut_bars, homes)
        model = analysis.measure(samples, sample_bars)
    rows = analysis.compare(model, corpus)
    return {"model": model, "corpus": corpus, "rows": rows, "within_margins": all(r["ok"] for r in rows)}
