"""Training length against held-out accuracy on the demo personas (K = 100, 810 rows).

    nice .venv/bin/python bench/bench_train_epochs.py MIN_STEPS EPOCHS DB

Sets the training defaults (`training.DEFAULT_MIN_STEPS`, `DEFAULT_EPOCHS`) for this
run, trains a fresh ensemble (ensemble seed 3, annotator fraction 0.2) on the demo crowd
through bench/eval_demo.py and prints the fit's steps, seconds and final loss, then the
held-out personas' accuracy table (5 seeds, methods uniform and hyre). DB should be a
copy of a store that already holds the demo embeddings, so that only training differs.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))


def main() -> int:
    min_steps, epochs, db = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    import torch

    torch.set_num_threads(1)
    from hyre_engine import training

    training.DEFAULT_MIN_STEPS, training.DEFAULT_EPOCHS = min_steps, epochs
    fit = training.fit_ensemble

    def timed(*args, **kwargs):
        start = time.perf_counter()
        report = fit(*args, **kwargs)
        print(f"fit: {report.steps} steps {time.perf_counter() - start:.2f} s loss {report.final_loss:.4f}",
              flush=True)
        return report

    training.fit_ensemble = timed
    import eval_demo

    sys.argv = ["eval_demo", "--db", db, "--seeds", "5", "--fractions", "0.2", "--n", "0,1,5,10,20",
                "--methods", "uniform,hyre", "--ensemble-seed", "3"]
    return eval_demo.main()


if __name__ == "__main__":
    raise SystemExit(main())
