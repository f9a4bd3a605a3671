"""How long `bachd --help` takes (TensorFlow must not be imported for it).

    python benchmarks/cli_startup.py
"""

import shutil
import subprocess
import sys
import time

import numpy as np


def main() -> None:
    command = [shutil.which("bachd") or sys.executable, "--help"] if shutil.which("bachd") else [sys.executable, "-m", "bachd", "--help"]
    samples = []
    for _ in range(10):
        start = time.perf_counter()
        subprocess.run(command, capture_output=True, check=True)
        samples.append(time.perf_counter() - start)
    ms = np.array(samples) * 1e3
    print(f"bachd --help: median {np.median(ms):.0f} ms, max {ms.max():.0f} ms over {len(ms)} runs")


if __name__ == "__main__":
    main()
