"""The musical checks of one or more models side by side, seed by seed, beside Bach's figures.

    python benchmarks/music_checks.py run --models models/default.keras other.keras \
        --seeds 0 1 2 3 --out runs/checks          # resumable: finished runs are kept
    python benchmarks/music_checks.py table --models models/default.keras other.keras \
        --seeds 0 1 2 3 --out runs/checks

``run`` calls ``bachd eval --json`` three ways for each model and seed, and keeps each
answer as a JSON file under ``--out``:

- ``--music``: ``--pieces`` generated pieces of 16 bars at the offline defaults, against
  the valid split of music21's chorales (the figures with their margins);
- ``--harmonize``: the live harmonizer on the validation chorales' melodies;
- ``--answers``: continue mode answering the validation chorales' opening bars.

A model may carry options of its own after ``@`` (``models/default320.keras@--key-pull=1``):
they go on each of its ``bachd eval`` commands, and name its results apart.

``table`` prints one Markdown table per check: each figure, Bach's, each model's figure at
each seed and its mean, and for ``--music`` whether every seed kept the figure's margin.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

CHECKS = {
    "music": ["--music", "--pieces", "{pieces}", "--split", "valid"],
    "harmonize": ["--harmonize", "--corpus", "bach", "--split", "valid", "--pieces", "41"],
    "answers": ["--answers", "--corpus", "bach", "--split", "valid", "--pieces", "41"],
}


def split_spec(spec: str) -> tuple[str, list[str]]:
    """``PATH@--opt=value@...`` → (PATH, [--opt=value, ...])."""
    path, *options = spec.split("@")
    return path, options


def label(spec: str) -> str:
    path, options = split_spec(spec)
    return "@".join([Path(path).stem, *(o.lstrip("-") for o in options)])


def result_path(out: Path, model: str, check: str, seed: int) -> Path:
    return out / f"{label(model)}.{check}.seed{seed}.json"


def run(models: list[str], seeds: list[int], out: Path, pieces: int, checks: list[str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    bachd = [sys.executable, "-m", "bachd"]
    for model in models:
        for check in checks:
            for seed in seeds:
                path = result_path(out, model, check, seed)
                if path.exists():
                    continue
                args = [a.format(pieces=pieces) for a in CHECKS[check]]
                path_, options = split_spec(model)
                command = [*bachd, "eval", path_, *args, *options, "--rng-seed", str(seed), "--json"]
                print(" ".join(command[2:]), file=sys.stderr, flush=True)
                done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "CI": "1"})
                if done.returncode != 0:
                    sys.exit(f"failed: {' '.join(command[2:])}\n{done.stderr.strip()}")
                tmp = path.with_suffix(".tmp")
                tmp.write_text(done.stdout)
                os.replace(tmp, path)


def _rows(check: str, answer: dict) -> list[dict]:
    """Each figure as {figure, label, bach, model[, margin, ok]}."""
    if check == "music":
        return [
            {"figure": r["figure"], "label": r["label"], "bach": r["corpus"], "model": r["model"],
             "margin": r.get("margin", ""), "ok": r.get("ok")}
            for r in answer["music"]["rows"]
        ]
    if check == "harmonize":
        return [{"figure": r["figure"], "label": r["label"], "bach": r["bach"], "model": r["bachd"]} for r in answer["rows"]]
    figures = [key.removeprefix("bachd_") for key in answer if key.startswith("bachd_")]
    return [
        {"figure": f, "label": f.replace("_", " "), "bach": answer.get("bach_" + f), "model": answer["bachd_" + f]}
        for f in figures
    ]


def _number(value) -> str:
    if value is None:
        return ""
    return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"


def table(models: list[str], seeds: list[int], out: Path, checks: list[str]) -> str:
    lines: list[str] = []
    for check in checks:
        answers = {
            (model, seed): json.loads(result_path(out, model, check, seed).read_text())
            for model in models
            for seed in seeds
            if result_path(out, model, check, seed).exists()
        }
        if not answers:
            continue
        first = _rows(check, next(iter(answers.values())))
        header = ["figure", "Bach"]
        for model in models:
            header += [f"{label(model)} seeds {' / '.join(map(str, seeds))}", "mean"]
        if check == "music":
            header += ["margin", "kept at every seed"]
        lines += [f"### {check}", "", "| " + " | ".join(header) + " |", "| --- |" + " ---: |" * (len(header) - 1)]
        for index, row in enumerate(first):
            cells = [row["label"], _number(row["bach"])]
            kept = []
            for model in models:
                values = []
                for seed in seeds:
                    answer = answers.get((model, seed))
                    if answer is None:
                        values.append(None)
                        continue
                    mine = _rows(check, answer)[index]
                    values.append(mine["model"])
                    kept.append(mine.get("ok"))
                present = [v for v in values if v is not None]
                cells += [" / ".join(_number(v) if v is not None else "–" for v in values),
                          _number(sum(present) / len(present)) if present else ""]
            if check == "music":
                cells += [row["margin"], "yes" if all(k is not False for k in kept) else "**no**"]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("run", "table"))
    parser.add_argument("--models", nargs="+", default=["models/default.keras"],
                        help="model files, each optionally with its own eval options: PATH@--key-pull=1")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3])
    parser.add_argument("--out", type=Path, default=Path("runs/checks"))
    parser.add_argument("--pieces", type=int, default=128, help="pieces generated per --music run")
    parser.add_argument("--checks", nargs="+", choices=tuple(CHECKS), default=list(CHECKS))
    args = parser.parse_args()
    if args.action == "run":
        run(args.models, args.seeds, args.out, args.pieces, args.checks)
    print(table(args.models, args.seeds, args.out, args.checks))


if __name__ == "__main__":
    main()
