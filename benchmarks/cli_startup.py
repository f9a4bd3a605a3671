"""How fast bachd starts, as a musician launches it: ``bachd --help``; ``bachd generate
--bars 16`` start to finish; ``bachd run`` (numpy engine, default model) from launch to its
ready line through a JACK dummy server, with its resident memory at that moment; the same
with ``--ui`` (the control surface served).

    python benchmarks/cli_startup.py [--runs 10]

Each figure is the median over the runs (max in brackets). Needs jackd for the run figure.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from jackprobe import JackServer  # noqa: E402


def bachd_command() -> list[str]:
    found = shutil.which("bachd", path=str(Path(sys.executable).parent))
    return [found] if found else [sys.executable, "-m", "bachd"]


def wall_seconds(args: list[str], runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(bachd_command() + args, capture_output=True, check=True)
        samples.append(time.perf_counter() - start)
    return samples


def resident_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_to_ready(server: JackServer, runs: int, extra: tuple[str, ...] = ()) -> tuple[list[float], list[float]]:
    """Seconds from launch to the ready line, and resident MB then."""
    seconds, memory = [], []
    for k in range(runs):
        start = time.perf_counter()
        process = subprocess.Popen(
            bachd_command() + ["run", "--backend", "jack", "--no-status", "--in", f"bench-in-{k}", "--out", f"bench-out-{k}", *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=server.env(),
        )
        line = process.stdout.readline()
        seconds.append(time.perf_counter() - start)
        memory.append(resident_mb(process.pid))
        process.terminate()
        process.wait(timeout=10)
        if not line.startswith("bachd ready"):
            raise SystemExit(f"bachd run did not get ready: {line!r} {process.stderr.read()[-400:]}")
    return seconds, memory


def summary(samples: list[float], unit: str, scale: float = 1.0) -> str:
    values = np.array(samples) * scale
    return f"median {np.median(values):.2f} {unit} (max {values.max():.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    help_s = wall_seconds(["--help"], args.runs)
    print(f"bachd --help                  {summary(help_s, 'ms', 1e3)}", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        generate_s = wall_seconds(["generate", "--bars", "16", "--rng-seed", "1", "-o", f"{folder}/g.mid"], args.runs)
    print(f"bachd generate --bars 16      {summary(generate_s, 's')}", flush=True)
    with JackServer(period=64) as server:
        ready_s, ready_mb = [], []
        ui_s, ui_mb = [], []
        for _ in range(args.runs):  # alternated, so a noisy spell hits both alike
            for seconds, memory, extra in ((ready_s, ready_mb, ()), (ui_s, ui_mb, ("--ui",))):
                s, m = run_to_ready(server, 1, extra)
                seconds += s
                memory += m
    print(f"bachd run, launch to ready    {summary(ready_s, 's')}", flush=True)
    print(f"bachd run, resident at ready  {summary(ready_mb, 'MB')}", flush=True)
    print(f"bachd run --ui, to ready      {summary(ui_s, 's')}", flush=True)
    print(f"bachd run --ui, resident      {summary(ui_mb, 'MB')}", flush=True)
    results = {}
    for name, samples in (("help_s", help_s), ("generate_16_bars_s", generate_s), ("run_ready_s", ready_s), ("run_ready_rss_mb", ready_mb),
                          ("run_ui_ready_s", ui_s), ("run_ui_ready_rss_mb", ui_mb)):
        results[name] = {"median": round(float(np.median(samples)), 3), "max": round(float(np.max(samples)), 3)}
    print(json.dumps(results))


if __name__ == "__main__":
    main()
