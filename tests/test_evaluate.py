"""evaluate_pools on a small real store: progress counts, and --jobs giving the results of one process.

The backbone is test_calibration's HashEncoder (fixed vectors per text), so nothing
loads a language model; the ensemble, the fine-tuning and the protocol are real.
"""

from __future__ import annotations

import sys
import types

import pytest
from test_calibration import TINY, HashEncoder, _store

from hyre_engine.evaluate import EVALUATE, EVALUATE_STAGES, TUNE, TUNE_UNITS, evaluate_pools
from hyre_engine.pipeline import BuildConfig

METHODS = ["uniform", "hyre", "finetune", "personal"]


def _evaluate(store, pool, **kwargs) -> dict:
    config = BuildConfig(train_groups=["crowd"], calibrate=False, **TINY)
    return evaluate_pools(store, pool, pool, config=config, n_values=[0, 1, 4], seeds=3, methods=METHODS,
                          backbone=HashEncoder(), **kwargs)


def test_progress_counts_are_monotone_and_end_at_each_stages_total(tmp_path):
    store, pool = _store(tmp_path)
    calls: dict[str, list[tuple[int, int]]] = {}
    result = _evaluate(store, pool, progress=lambda stage, done, total: calls.setdefault(stage, []).append(
        (done, total)))
    assert set(calls) <= set(EVALUATE_STAGES) and {TUNE, EVALUATE} <= set(calls)
    for stage, seen in calls.items():
        done = [d for d, _ in seen]
        assert done == sorted(done), stage
        assert len({t for _, t in seen}) == 1 and done[-1] == seen[-1][1], stage
    n_groups = len(result["groups"])
    assert n_groups == 2  # the crowd and the target group
    assert calls[EVALUATE][-1] == (n_groups * 3, n_groups * 3)
    assert [d for d, _ in calls[EVALUATE]] == list(range(1, n_groups * 3 + 1))  # once per group and seed
    assert calls[TUNE][-1][1] == n_groups * TUNE_UNITS and len(calls[TUNE]) > n_groups  # per step, not per group


@pytest.mark.slow  # two spawned processes import torch: tens of seconds on a loaded machine
def test_jobs_give_the_results_of_one_process(tmp_path, monkeypatch):
    store, pool = _store(tmp_path)
    one = _evaluate(store, pool)
    calls = []
    # As under Streamlit (or after an AppTest): __main__ is a script whose top level must
    # not run again in the workers (app.py's builds the demo).
    script = tmp_path / "main_script.py"
    script.write_text("raise SystemExit('the parent script ran in a worker')\n")
    fake_main = types.ModuleType("__main__")
    fake_main.__file__ = str(script)
    monkeypatch.setitem(sys.modules, "__main__", fake_main)
    two = _evaluate(store, pool, jobs=2, progress=lambda stage, done, total: calls.append((stage, done, total)))
    assert two["groups"] == one["groups"] and two["summary"] == one["summary"]
    assert list(two["groups"]) == list(one["groups"])  # same order too
    assert ("evaluate", 6, 6) in calls
    assert one["summary"]["finetune"]["mean"][0] == one["summary"]["uniform"]["mean"][0]  # n = 0: untouched
    assert one["summary"]["finetune"]["mean"][2] != one["summary"]["uniform"]["mean"][2]  # tuned at n = 4
