"""Per-token cost of the streaming engine against re-running the network over a window.

    python benchmarks/engine.py [--model models/default.keras] [--tokens 5000]
    python benchmarks/engine.py --attention-steps 0 4 16 64 [--tokens 5000]
    python benchmarks/engine.py --widths 320 448 512 640 [--tokens 5000]

Prints p50/p99 of one token step for each engine backend, the cost of one token the way
the research scripts produce it (the full model over the last 256 tokens), and the ratio.
With ``--attention-steps``, it instead times one streamed token (numpy engine, one stream)
for models of the given model's shape with causal attention over each K (0: none); the
weights are untrained, which does not change the cost. ``--widths`` does the same for
models of the given shape with LSTM layers of each width.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from bachd.music import encoding
from bachd.model.engine import make_engine
from bachd.model.keras_model import load_model

ROOT = Path(__file__).resolve().parent.parent


def percentiles(samples_seconds: list[float]) -> dict:
    ms = np.array(samples_seconds) * 1e3
    return {"p50_ms": round(float(np.percentile(ms, 50)), 4), "p99_ms": round(float(np.percentile(ms, 99)), 4),
            "mean_ms": round(float(ms.mean()), 4)}


def time_engine(model, backend: str, tokens: int) -> dict:
    engine = make_engine(model, batch_size=1, backend=backend)
    engine.warm_up()
    rng = np.random.default_rng(0)
    stream = rng.integers(3, encoding.VOCAB_SIZE, size=tokens)
    samples = []
    for i, token in enumerate(stream):
        start = time.perf_counter()
        engine.step(int(token), i % 4, (i // 4) % 4)
        samples.append(time.perf_counter() - start)
    return percentiles(samples[100:])


def time_window(model, window: int, repeats: int) -> dict:
    """One token by re-running the whole model over the last ``window`` tokens."""
    rng = np.random.default_rng(1)
    inputs = {
        "tokens": rng.integers(3, encoding.VOCAB_SIZE, size=(1, window)).astype(np.int32),
        "voices": (np.arange(window) % 4)[None].astype(np.int32),
        "beats": ((np.arange(window) // 4) % 4)[None].astype(np.int32),
    }
    model.predict_on_batch(inputs)  # trace
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.predict_on_batch(inputs)
        samples.append(time.perf_counter() - start)
    return percentiles(samples)


def shape_cost(model, field: str, values: list[int], tokens: int) -> None:
    """Time one streamed token for models of ``model``'s shape with ``field`` set to each value."""
    from dataclasses import replace

    from bachd.model.keras_model import build_model, config_of

    shape = config_of(model)
    results = []
    for value in values:
        candidate = build_model(replace(shape, **{field: value}))
        timing = time_engine(candidate, "numpy", tokens)
        results.append({field: value, "parameters": int(candidate.count_params()), **timing})
        print(f"{field} {value:4d}  {results[-1]['parameters']:>9,} parameters  "
              f"p50 {timing['p50_ms']:.3f} ms  p99 {timing['p99_ms']:.3f} ms", flush=True)
    print(json.dumps(results))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(ROOT / "models" / "default.keras"))
    parser.add_argument("--tokens", type=int, default=5000)
    parser.add_argument("--window", type=int, default=256)
    parser.add_argument("--window-repeats", type=int, default=50)
    parser.add_argument("--attention-steps", type=int, nargs="*", help="Time attention over these K steps instead.")
    parser.add_argument("--widths", type=int, nargs="*", help="Time LSTM layers of these widths instead.")
    args = parser.parse_args()
    model = load_model(args.model)
    if args.attention_steps:
        shape_cost(model, "attention_steps", args.attention_steps, args.tokens)
        return
    if args.widths:
        shape_cost(model, "lstm_units", args.widths, args.tokens)
        return
    results = {"model": args.model, "parameters": int(model.count_params())}
    for backend in ("numpy", "tf"):
        results[f"engine_{backend}"] = time_engine(model, backend, args.tokens)
    results["window_rerun"] = time_window(model, args.window, args.window_repeats)
    best = min(results["engine_numpy"]["mean_ms"], results["engine_tf"]["mean_ms"])
    results["speedup_mean"] = round(results["window_rerun"]["mean_ms"] / best, 1)
    for key in ("engine_numpy", "engine_tf", "window_rerun"):
        r = results[key]
        print(f"{key:14s} p50 {r['p50_ms']:.3f} ms  p99 {r['p99_ms']:.3f} ms  mean {r['mean_ms']:.3f} ms")
    print(f"streaming is {results['speedup_mean']}x faster per token than re-running a {args.window}-token window")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
