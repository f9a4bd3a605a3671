"""Pictures: piano rolls of four-voice music, per-voice evaluation charts and training
curves (matplotlib, drawn off-screen)."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Optional

import numpy as np

from bachd.music.encoding import STEPS_PER_BEAT, VOICES, tokens_to_notes

VOICE_COLOURS = ("#d62728", "#ff7f0e", "#2ca02c", "#1f77b4")  # S red, A orange, T green, B blue
SEED_SHADE = "#fbeec1"  # behind the seed, so what bachd added stands apart


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def piano_roll(
    tokens: np.ndarray,
    png: str | Path,
    seed_steps: int = 0,
    beats_per_bar: int = 4,
    title: Optional[str] = None,
) -> int:
    """Draw a (T, 4) token array as a piano roll; returns the number of notes drawn.

    Voices have their own colours; bar lines are drawn; the first ``seed_steps`` steps (the
    seed) are shaded and labelled apart from what bachd generated.
    """
    plt = _pyplot()
    notes = tokens_to_notes(np.asarray(tokens))
    steps = int(np.asarray(tokens).shape[0])
    fig, axis = plt.subplots(figsize=(max(6.0, min(24.0, steps / 16)), 4.8))
    if notes:
        low = min(n.pitch for n in notes) - 2
        high = max(n.pitch for n in notes) + 2
    else:
        low, high = 48, 72
    bar = beats_per_bar * STEPS_PER_BEAT
    for step in range(0, steps + 1, bar):
        axis.axvline(step, color="#999999", linewidth=0.8, zorder=0)
    if seed_steps:
        axis.axvspan(0, seed_steps, color=SEED_SHADE, zorder=-1)
        axis.axvline(seed_steps, color="black", linewidth=1.6, zorder=3)
        axis.text(seed_steps / 2, high + 0.5, "seed", ha="center", va="bottom", fontsize=9)
        axis.text(seed_steps + (steps - seed_steps) / 2, high + 0.5, "bachd", ha="center", va="bottom", fontsize=9)
    for voice in range(len(VOICES)):
        mine = [n for n in notes if n.voice == voice]
        for note in mine:
            axis.broken_barh([(note.start_step, note.end_step - note.start_step)], (note.pitch - 0.4, 0.8),
                             facecolors=VOICE_COLOURS[voice], edgecolors="black", linewidth=0.3)
        axis.plot([], [], color=VOICE_COLOURS[voice], linewidth=6, label=f"{VOICES[voice]} ({len(mine)})")
    octaves = [p for p in range(low, high + 1) if p % 12 == 0]
    axis.set_yticks(octaves, [f"C{p // 12 - 1}" for p in octaves])
    axis.set_ylim(low, high + 3)
    axis.set_xlim(0, max(steps, 1))
    axis.set_xticks(range(0, steps + 1, bar), [str(i + 1) for i in range(len(range(0, steps + 1, bar)))])
    axis.set_xlabel("bar")
    axis.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), fontsize=8, ncol=4, frameon=False)
    if title:
        axis.set_title(title)
    fig.tight_layout()
    fig.savefig(str(png), dpi=110)
    plt.close(fig)
    return len(notes)


def eval_chart(figures: dict, png: str | Path, title: str = "") -> None:
    """Per-voice pitch NLL and accuracy from ``bachd eval``'s figures, side by side."""
    plt = _pyplot()
    voices = list(figures["per_voice"])
    nll = [figures["per_voice"][v]["pitch_nll"] for v in voices]
    accuracy = [figures["per_voice"][v]["accuracy"] for v in voices]
    colours = VOICE_COLOURS[: len(voices)]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    left.bar(voices, nll, color=colours)
    left.axhline(
        figures["pitch_nll"], color="black", linestyle="--", linewidth=1, label=f"all voices {figures['pitch_nll']:.3f}"
    )
    left.set_title("pitch NLL (nats/token, lower is better)")
    left.legend(fontsize=8)
    right.bar(voices, accuracy, color=colours)
    right.axhline(
        figures["accuracy"], color="black", linestyle="--", linewidth=1, label=f"all voices {figures['accuracy']:.3f}"
    )
    right.set_ylim(0, 1)
    right.set_title("accuracy")
    right.legend(fontsize=8, loc="lower right")
    for axis, values in ((left, nll), (right, accuracy)):
        for x, value in enumerate(values):
            axis.text(x, value, f"{value:.3f}", ha="center", va="bottom", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(str(png), dpi=110)
    plt.close(fig)


def plot_history(log_csv: Path, png: Path) -> None:
    if not log_csv.exists():
        return
    with open(log_csv) as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        return
    plt = _pyplot()
    epochs = [int(r["epoch"]) + 1 for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    panels = [
        ("loss", "token NLL (nats)", float),
        ("accuracy", "accuracy", float),
        ("loss", "token perplexity", math.exp),
    ]
    for axis, (key, title, transform) in zip(axes, panels):
        for prefix, label in (("", "train"), ("val_", "validation")):
            values = [transform(float(r[prefix + key])) for r in rows if r.get(prefix + key)]
            if values:
                axis.plot(epochs[: len(values)], values, label=label)
        axis.set_title(title)
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
        axis.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
