"""The first launch as a server job (hyre_engine/first_launch.py): the real demo pool built
on a tiny local BERT (hidden 32) with a small ensemble, so a whole first launch takes seconds."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from hyre_engine import first_launch, jobs
from hyre_engine.backbone import load_backbone
from hyre_engine.demo import DEMO_POOL_NAME, DEMO_TRAIN_GROUPS
from hyre_engine.pipeline import BuildConfig, calibration_pending
from hyre_engine.store import Store

WAIT_S = 300  # a shared CPU can be slow; the whole launch takes seconds here
WORDS = ["what", "is", "a", "the", "why", "how", "and", "of", "to", "it", "you", "?", ".", ","]


def small_config() -> BuildConfig:
    """The demo's build (trained on the crowd, calibration deferred) at a size that trains in a second."""
    return BuildConfig(n_heads=8, hidden=16, train_groups=DEMO_TRAIN_GROUPS, calibration_seeds=1)


@pytest.fixture(scope="module")
def backbone(tmp_path_factory, tiny_bert):
    return load_backbone(tiny_bert(tmp_path_factory.mktemp("tiny-bert-launch"), WORDS))


@pytest.fixture
def registry():
    """A private registry; every job it ran has ended before the test's files go."""
    reg = jobs.JobRegistry()
    yield reg
    for job in reg.jobs():
        reg.wait(job.job_id, WAIT_S)


def test_a_fresh_install_builds_the_demo_once_whoever_asks(tmp_path, backbone, registry):
    path = str(tmp_path / "fresh.duckdb")
    gate = threading.Event()

    def held():  # the model arrives when the test lets go: the launch runs until then
        gate.wait(WAIT_S)
        return backbone

    seen = first_launch.current(path, registry=registry, backbone=held, config=small_config())
    assert seen is not None and seen.kind == jobs.FIRST_LAUNCH and seen.running
    # a second tab, a reload, the server's own start: the same job, never a second build
    assert first_launch.current(path, registry=registry).job_id == seen.job_id
    assert first_launch.start(path, registry=registry).job_id == seen.job_id
    gate.set()
    done = registry.wait(seen.job_id, WAIT_S)
    assert done.status == jobs.DONE, done.error
    assert done.stages == first_launch.STAGES == ("import", "load", "embed", "train", "predict")
    assert done.fraction == 1.0 and done.trained and done.pool_name == DEMO_POOL_NAME
    # the file exists now and nothing runs: the pages take over
    assert first_launch.current(path, registry=registry) is None
    with Store(path) as store:
        assert store.get_pool(DEMO_POOL_NAME).pool_id == done.pool_id
        assert store.get_head_predictions(done.ensemble_id, done.pool_id).shape == (810, 8)
    # beta's calibration runs as its own job after the build, in the same registry
    (calibration,) = registry.jobs(path, kind=jobs.CALIBRATION)
    assert calibration.ensemble_id == done.ensemble_id
    assert registry.wait(calibration.job_id, WAIT_S).status == jobs.DONE
    with Store(path) as store:
        assert not calibration_pending(store.get_ensemble(done.ensemble_id, with_weights=False).meta)


def test_progress_goes_through_the_stages_in_order_and_only_grows(tmp_path, backbone, registry):
    path = str(tmp_path / "fresh.duckdb")
    job = first_launch.start(path, registry=registry, backbone=lambda: backbone, config=small_config())
    updates = []
    while registry.get(job.job_id).running:
        updates.append(registry.get(job.job_id))
        threading.Event().wait(0.01)
    done = registry.wait(job.job_id, WAIT_S)
    updates.append(done)
    fractions = [u.fraction for u in updates]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    order = [s for s in dict.fromkeys(u.stage for u in updates)]
    assert order == [s for s in done.stages if s in order] and order[-1] == "predict"


def test_a_failed_first_launch_waits_for_a_person_then_starts_again(tmp_path, backbone, registry):
    path = str(tmp_path / "fresh.duckdb")

    def broken():
        raise RuntimeError("the model folder went away")

    failed = registry.wait(first_launch.start(path, registry=registry, backbone=broken).job_id, WAIT_S)
    assert failed.status == jobs.FAILED and failed.error == "RuntimeError: the model folder went away"
    # the app shows the failure on every run instead of building again by itself
    assert first_launch.current(path, registry=registry).job_id == failed.job_id
    again = first_launch.start(path, registry=registry, backbone=lambda: backbone, config=small_config())
    assert again.job_id != failed.job_id
    assert registry.wait(again.job_id, WAIT_S).status == jobs.DONE


def test_the_first_launch_screen_needs_no_heavy_import():
    code = ("import sys; from hyre_engine import first_launch; from pages._shared import first_launch as screen; "
            "print(sorted(m for m in ('torch', 'duckdb', 'pandas', 'scipy', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
