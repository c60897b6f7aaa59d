"""Where a first launch waits before embedding starts: imports, model load, first call.

    nice .venv/bin/python bench/bench_launch.py

Each step runs in a fresh interpreter (a launch pays every import once): importing
torch; importing transformers; importing sentence-transformers (most of what loading the
model costs); `load_backbone()` of the default MiniLM on the CPU (which imports
sentence-transformers) and its first `embed`.
Prints seconds per step and the load average, since the machine is shared.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

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


def main() -> int:
    print(f"load average before: {os.getloadavg()[0]:.1f}")
    for mode in ("st", "backbone"):
        out = subprocess.run([sys.executable, "-c", PROBE, mode], cwd=REPO, capture_output=True, text=True,
                             check=True)
        for key, value in json.loads(out.stdout.strip().splitlines()[-1]).items():
            print(f"{mode:<9} {key:<32} {value:.2f} s" if isinstance(value, float) else f"{mode:<9} {key:<32} {value}")
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
