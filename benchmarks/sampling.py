"""The live path's per-voice sampling cost: one stream, one voice, as `bachd run` calls it.

    OPENBLAS_NUM_THREADS=1 python benchmarks/sampling.py

Two cases on random logits (temperature 0.9, top-p 0.95): a voice the model wants to hold
(hold probability 0.75, as on most 16ths), and a voice that is free to move (the hold is one
token among many). Holding skips the pitch draw; moving pays for the rhythm draw first.
Run it with nothing else running: the figures are latencies.
"""

import time

import numpy as np

from bachd.music import encoding as enc
from bachd.model.sampling import Sampler, SamplingConfig

DRAWS = 20000


def case(hold_probability: float | None) -> dict:
    rng = np.random.default_rng(0)
    sampler = Sampler(SamplingConfig(temperature=0.9, top_p=0.95, allow_parallels=True), rng_seed=0)
    sampler.log_probs = False  # as live
    previous = np.array([enc.attack(65)])
    allowed = sampler.allowed(1, previous)[0]
    rows = []
    for _ in range(64):
        logits = rng.normal(size=enc.VOCAB_SIZE) * 3
        if hold_probability is not None:
            others = np.log(np.exp(logits[allowed & (np.arange(enc.VOCAB_SIZE) != enc.hold(65))]).sum())
            logits[enc.hold(65)] = others + np.log(hold_probability / (1 - hold_probability))
        rows.append(logits[None])
    times = []
    for i in range(DRAWS):
        start = time.perf_counter()
        sampler.sample(rows[i % 64], 1, previous)
        times.append(time.perf_counter() - start)
    ms = np.array(times) * 1e3
    return {"p50_ms": round(float(np.percentile(ms, 50)), 4), "p99_ms": round(float(np.percentile(ms, 99)), 4)}


def main() -> None:
    for name, p in (("hold probability 0.75", 0.75), ("free to move", None)):
        figures = case(p)
        print(f"{name:22s} p50 {figures['p50_ms']:.3f} ms  p99 {figures['p99_ms']:.3f} ms per voice")


if __name__ == "__main__":
    main()
