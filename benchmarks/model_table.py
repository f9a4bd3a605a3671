"""The model results table: train each configuration on the JSB train split, then measure it.

    python benchmarks/model_table.py train [--only NAME ...] [--threads 1]
    python benchmarks/model_table.py table [--only NAME ...]

``train`` runs ``bachd train`` once per row, one after another, each on the same short
budget (the schedule of ``BUDGET``) so that rows compare like with like; a row whose model
already exists is skipped, and an interrupted row is resumed. ``table`` evaluates every
trained row on the JSB validation split (pitch NLL as in DESIGN.md, accuracy), times one
engine step per token (numpy engine, one stream), and prints the Markdown table the README
carries. Run ``table`` with nothing else running: the engine figure is a latency.

The data lives outside the project (``--data``, default ../shared/data); bachd never needs it
at run time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Rows are compared on a proxy: a 2×128 model on a fixed short schedule (208 batches of 32
# windows, 16 passes over the training steps), so that a dozen rows fit in a few CPU hours.
# Width and depth rows change the proxy's size; the shipped models' own rows are their cards.
BUDGET = ["--epochs", "8", "--passes", "2", "--lstm-units", "128"]

# name, what it changes, extra `bachd train` options (on top of the defaults).
ROWS: list[tuple[str, str, list[str]]] = [
    ("base", "proxy 2×128; voice+beat inputs, ±6 transposition, dropout 0.3, wd 0.01, window 128", []),
    ("no-side-inputs", "no voice or beat-position inputs", ["--no-voice-input", "--no-beat-input"]),
    ("transpose-0", "no transposition", ["--transpose", "0"]),
    ("js-fakes", "JS Fake Chorales added to the training data", ["@JSF"]),
    ("attention-16", "causal attention over the last 16 steps (a 4/4 bar)", ["--attention-steps", "16"]),
    ("smooth-0.1", "label smoothing 0.1", ["--label-smoothing", "0.1"]),
    ("dropout-0.5", "dropout 0.5", ["--dropout", "0.5"]),
    ("3x128", "three layers", ["--lstm-layers", "3"]),
    ("window-64", "64-step windows", ["--window-steps", "64"]),
    ("2x256", "width 256", ["--lstm-units", "256"]),
    ("transpose-3", "±3 semitones", ["--transpose", "3"]),
    ("wd-0.1", "weight decay 0.1", ["--weight-decay", "0.1"]),
    ("window-256", "256-step windows", ["--window-steps", "256"]),
    ("window-32", "32-step windows", ["--window-steps", "32"]),
    # js-fakes on the base's compute: 0.8 passes over 643 pieces is the base's 208 batches.
    ("js-fakes-208", "JS Fake Chorales added, same 208 batches as the base", ["@JSF", "--passes", "0.8"]),
]


def paths(data: Path) -> dict[str, Path]:
    return {
        "jsb": data / "jsb" / "Jsb16thSeparated.trainvalid.json",
        "jsf": data / "js-fakes" / "js-fakes-16thSeparated.npz",
    }


def selected(only: list[str] | None):
    rows = [row for row in ROWS if not only or row[0] in only]
    unknown = set(only or []) - {row[0] for row in ROWS}
    if unknown:
        sys.exit(f"unknown rows: {', '.join(sorted(unknown))}")
    return rows


def train_rows(args) -> None:
    files = paths(args.data)
    bachd = [sys.executable, "-m", "bachd"]
    for name, _, extra in selected(args.only):
        out = args.runs / f"{name}.keras"
        if out.exists():
            print(f"{name}: done already", flush=True)
            continue
        options = []
        for option in extra:
            options += ["--corpus", str(files["jsf"]), "--allow-pickle"] if option == "@JSF" else [option]
        command = bachd + ["train", "--corpus", str(files["jsb"]), *BUDGET, *options, "--out", str(out)]
        if args.threads:
            command += ["--threads", str(args.threads)]
        if (args.runs / f"{name}.run" / "state.json").exists():
            command.append("--resume")
        print(f"{name}: {' '.join(command[2:])}", flush=True)
        with open(args.runs / f"{name}.log", "a") as log:
            result = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT)
        if result.returncode:
            sys.exit(f"{name}: bachd train exited {result.returncode}; see {args.runs / (name + '.log')}")


def engine_p99(model, tokens: int = 4000) -> float:
    from engine import time_engine  # benchmarks/engine.py, beside this script

    return time_engine(model, "numpy", tokens)["p99_ms"]


def table(args) -> None:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from bachd.music.corpus import load_corpus
    from bachd.model.metrics import evaluate_pieces
    from bachd.model.keras_model import load_model
    from bachd.model.modelfile import read_card

    valid = load_corpus(str(paths(args.data)["jsb"])).split("valid")
    results = []
    print("| row | change | parameters | valid pitch NLL | accuracy | training time | engine p99/token |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for name, change, _ in selected(args.only):
        out = args.runs / f"{name}.keras"
        if not out.exists():
            continue
        model = load_model(out)
        card = read_card(out)
        figures = evaluate_pieces(model, valid)
        row = {
            "row": name, "change": change, "parameters": int(model.count_params()),
            "pitch_nll": figures["pitch_nll"], "accuracy": figures["accuracy"],
            "minutes": round(card.get("training_seconds", 0) / 60, 1), "epochs": card.get("epochs_run"),
            "engine_p99_ms": round(engine_p99(model), 3), "command": card.get("command", ""),
        }
        results.append(row)
        print(
            f"| {name} | {change} | {row['parameters']:,} | {row['pitch_nll']:.4f} | {row['accuracy']:.4f} "
            f"| {row['minutes']:.0f} min | {row['engine_p99_ms']:.3f} ms |",
            flush=True,
        )
    (args.runs / "table.json").write_text(json.dumps(results, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("train", "table"))
    parser.add_argument("--only", nargs="*", help="Rows to run (default: all).")
    parser.add_argument("--runs", type=Path, default=ROOT / "benchmarks" / "runs", help="Where models and logs go.")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads per training run.")
    args = parser.parse_args()
    if not paths(args.data)["jsb"].exists():
        sys.exit(f"the JSB data is not at {paths(args.data)['jsb']} (pass --data)")
    args.runs.mkdir(parents=True, exist_ok=True)
    train_rows(args) if args.action == "train" else table(args)


if __name__ == "__main__":
    main()
