"""Where a first launch waits before embedding starts: imports, model load, first call.

    nice .venv/bin/python bench/bench_launch.py

First the command line: the median of `python -m hyre_engine --help` over HELP_RUNS
fresh processes (target: under 1 s), against a bare `python -c pass` in the same run.
Then each step runs in a fresh interpreter (a launch pays every import once): importing
torch; importing transformers; importing sentence-transformers (most of what loading the
model costs); `load_backbone()` of the default MiniLM on the CPU (which imports
sentence-transformers) and its first `embed`.
Prints seconds per step and the load average, since the machine is shared.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Runs of each command for the --help timing: enough for a median on a noisy machine.
HELP_RUNS = 9

PROBE = r"""
import json, sys, time
t0 = time.perf_counter()
import torch
t1 = time.perf_counter()
import transformers
t2 = time.perf_counter()
if sys.argv[1] == "st":
    import sentence_transformers
    print(json.dumps({"import torch": t1 - t0, "import transformers": t2 - t1,
                      "import sentence_transformers": time.perf_counter() - t2}))
else:
    from hyre_engine.backbone import load_backbone
    t3 = time.perf_counter()
    backbone = load_backbone(device="cpu")
    t4 = time.perf_counter()
    backbone.embed(["Why is the sky blue?"], ["Rayleigh scattering."])
    t5 = time.perf_counter()
    print(json.dumps({"import torch": t1 - t0, "import transformers": t2 - t1,
                      "import hyre_engine.backbone": t3 - t2, "load_backbone": t4 - t3,
                      "first embed": t5 - t4,
                      "sentence_transformers imported": "sentence_transformers" in sys.modules}))
"""


def _seconds(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, cwd=REPO, capture_output=True, check=True)
    return time.perf_counter() - start


def time_help(runs: int = HELP_RUNS) -> tuple[float, float]:
    """Median seconds of `python -m hyre_engine --help` and of a bare interpreter, run in
    alternation so that both see the same load."""
    helped, bare = [], []
    for _ in range(runs):
        bare.append(_seconds([sys.executable, "-c", "pass"]))
        helped.append(_seconds([sys.executable, "-m", "hyre_engine", "--help"]))
    return statistics.median(helped), statistics.median(bare)


def main() -> int:
    print(f"load average before: {os.getloadavg()[0]:.1f}")
    helped, bare = time_help()
    print(f"python -m hyre_engine --help     {helped:.2f} s (median of {HELP_RUNS}; target < 1 s)")
    print(f"python -c pass (baseline)        {bare:.2f} s; --help costs {helped - bare:.2f} s over it, "
          f"{helped / bare:.1f}x")
    if "--help-only" in sys.argv:
        return 0
    for mode in ("st", "backbone"):
        out = subprocess.run([sys.executable, "-c", PROBE, mode], cwd=REPO, capture_output=True, text=True,
                             check=True)
        for key, value in json.loads(out.stdout.strip().splitlines()[-1]).items():
            print(f"{mode:<9} {key:<32} {value:.2f} s" if isinstance(value, float) else f"{mode:<9} {key:<32} {value}")
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
