"""Build jobs (hyre_engine.jobs): the real pipeline on a tiny pool, run on a thread of the process.

A tiny local BERT (hidden 32) embeds a 6-pair pool and K = 4 heads train on it: a build
takes about a second, so each test can run several.
"""

from __future__ import annotations

import threading

import pytest

from hyre_engine import jobs
from hyre_engine.backbone import load_backbone
from hyre_engine.data import read_preferences
from hyre_engine.pipeline import BuildConfig
from hyre_engine.store import Store

WORDS = ["question", "a", "short", "long", "detailed", "answer", "?", ".", ","] + [str(i) for i in range(10)]
WAIT_S = 120  # a shared CPU can be slow; a build here takes about a second


def tiny_config(**overrides) -> BuildConfig:
    return BuildConfig(**{"n_heads": 4, "hidden": 8, "calibrate": False, "train_groups": ["g1"], **overrides})


@pytest.fixture(scope="module")
def backbone(tmp_path_factory, tiny_bert):
    return load_backbone(tiny_bert(tmp_path_factory.mktemp("tiny-bert-jobs"), WORDS))


@pytest.fixture
def pools(tmp_path, design_csv):
    """A store with two 6-pair pools, "one" and "two": (store, [pool ids])."""
    csv = tmp_path / "prefs.csv"
    csv.write_bytes(design_csv(n_pairs=6))
    store = Store(tmp_path / "jobs.duckdb")
    ids = [store.add_pool(name, read_preferences(csv), source="tests") for name in ("one", "two")]
    yield store, ids
    store.close()


def test_a_build_runs_on_its_own_thread_and_its_progress_only_grows(pools, backbone):
    store, (pool, _) = pools
    registry = jobs.JobRegistry()
    seen: list[tuple[jobs.Job, str]] = []
    job = registry.start(store, pool, tiny_config(), backbone=lambda: backbone, started_by="kim",
                         on_update=lambda j: seen.append((j, threading.current_thread().name)))
    assert job.running and job.fraction == 0.0  # start returns at once, the build goes on
    done = registry.wait(job.job_id, WAIT_S)
    assert done.status == jobs.DONE and done.error == "" and done.fraction == 1.0
    assert {name for _, name in seen} == {f"hyre-build-{job.job_id}"}  # never the caller's thread
    updates = [j for j, _ in seen]
    fractions = [j.fraction for j in updates]
    assert fractions == sorted(fractions) and fractions[0] == 0.0 < fractions[1] and fractions[-1] == 1.0
    # stages in the planned order, each one's count growing to its total
    assert done.stages == ("load", "embed", "train", "predict")
    order = list(dict.fromkeys(j.stage for j in updates))
    assert order == list(done.stages)
    for stage in done.stages:
        counts = [(j.done, j.total) for j in updates if j.stage == stage]
        assert [d for d, _ in counts] == sorted(d for d, _ in counts)
        assert counts[-1][0] == counts[-1][1] > 0, (stage, counts)
    # the build is stored: the ensemble and its Z, as the report says
    assert done.trained and done.started_by == "kim" and done.finished_at >= done.started_at
    assert set(store.list_ensembles(pool)["ensemble_id"]) == {done.ensemble_id}
    assert store.get_head_predictions(done.ensemble_id, pool).shape == (6, 4)
    assert f"ensemble {done.ensemble_id}: trained" in done.summary
    assert registry.jobs(store.path) == [done] and registry.jobs("/elsewhere.duckdb") == []


def test_a_failing_build_ends_failed_with_a_plain_message_and_no_half_build(pools, backbone):
    store, (pool, _) = pools
    registry = jobs.JobRegistry()
    job = registry.start(store, pool, tiny_config(train_groups=["nobody"]), backbone=lambda: backbone)
    failed = registry.wait(job.job_id, WAIT_S)
    assert failed.status == jobs.FAILED and failed.finished_at is not None
    assert failed.error == f"pool {pool} has no labelled rows for groups ['nobody'] to train on"
    assert "Traceback" not in failed.error and failed.ensemble_id == ""
    # what was written is whole: every text embedded (reused by the next build), no ensemble, no Z
    assert store.list_ensembles(pool).empty
    texts = store.pool_texts(pool)["text_hash"].tolist()
    assert store.missing_embeddings(backbone.id, texts) == []

    def broken():
        raise RuntimeError("the model folder went away")

    job = registry.start(store, pool, tiny_config(), backbone=broken)
    assert registry.wait(job.job_id, WAIT_S).error == "RuntimeError: the model folder went away"
    assert store.list_ensembles(pool).empty


def test_one_build_per_pool_at_a_time(pools, backbone):
    store, (one, two) = pools
    registry = jobs.JobRegistry(keep_finished=2)
    gate = threading.Event()

    def held():  # the backbone arrives when the test lets go: the first build is running until then
        gate.wait(WAIT_S)
        return backbone

    first = registry.start(store, one, tiny_config(), backbone=held, started_by="kim")
    with pytest.raises(jobs.BuildRunningError, match="pool 'one' is being built already .started by kim"):
        registry.start(store, one, tiny_config(n_heads=6), backbone=lambda: backbone)
    other = registry.start(store, two, tiny_config(), backbone=lambda: backbone)  # another pool may build
    assert registry.running(store.path, one).job_id == first.job_id
    gate.set()
    built = registry.wait(first.job_id, WAIT_S)
    assert built.status == jobs.DONE and built.trained
    assert registry.wait(other.job_id, WAIT_S).status == jobs.DONE
    assert registry.running(store.path, one) is None
    # once it ended the pool builds again (the same settings: the stored ensemble is reused)
    again = registry.wait(registry.start(store, one, tiny_config(), backbone=lambda: backbone).job_id, WAIT_S)
    assert again.status == jobs.DONE and not again.trained
    assert again.ensemble_id == built.ensemble_id
    # two finished jobs are kept (keep_finished), newest first: the first one is forgotten
    assert [j.job_id for j in registry.jobs()] == [again.job_id, other.job_id]
    with pytest.raises(KeyError, match="no pool"):
        registry.start(store, "nope", tiny_config())


def test_plain_errors_name_the_problem_without_quotes_or_traceback():
    assert jobs.plain_error(KeyError("no pool 'x'")) == "no pool 'x'"
    assert jobs.plain_error(ValueError("bad K")) == "bad K"
    assert jobs.plain_error(RuntimeError()) == "RuntimeError"
    stages = jobs.planned_stages(tiny_config(calibrate=True))
    assert stages == ("load", "embed", "calibrate", "train", "predict")
    assert jobs.overall_fraction(stages, "load", 0, 1) == 0.0
    assert jobs.overall_fraction(stages, "predict", 5, 5) == pytest.approx(1.0)


def test_submit_gives_the_running_job_of_the_same_kind_and_subject(tmp_path):
    registry = jobs.JobRegistry()
    gate = threading.Event()

    def job(kind=jobs.FIRST_LAUNCH, db="a.duckdb"):
        return jobs.Job(job_id=jobs.new_job_id(), db_path=db, pool_id="", pool_name="demo", settings={},
                        stages=(jobs.IMPORT,), started_by="", started_at=0.0, kind=kind)

    def held(runner):
        runner.progress(jobs.IMPORT, 0, 1)
        gate.wait(WAIT_S)
        runner.set(pool_id="p1")
        return {"summary": "imported"}

    first = registry.submit(job(), held)
    assert registry.submit(job(), held).job_id == first.job_id  # a second tab: the same job
    other = registry.submit(job(db="b.duckdb"), held)  # another database has its own
    assert other.job_id != first.job_id
    gate.set()
    done = registry.wait(first.job_id, WAIT_S)
    assert done.status == jobs.DONE and done.pool_id == "p1" and done.summary == "imported"
    assert registry.latest("a.duckdb", jobs.FIRST_LAUNCH).job_id == first.job_id
    again = registry.submit(job(), held)  # once it ended, asking again starts a new one
    assert again.job_id != first.job_id and registry.wait(again.job_id, WAIT_S).status == jobs.DONE
    assert [j.kind for j in registry.jobs("a.duckdb", kind=jobs.FIRST_LAUNCH)] == [jobs.FIRST_LAUNCH] * 2
    assert registry.jobs("a.duckdb", kind=jobs.BUILD) == []


def test_a_deferred_calibration_is_one_job_per_ensemble_and_a_failure_is_kept(pools, backbone):
    from dataclasses import replace

    from hyre_engine.pipeline import PENDING_CALIBRATION, build_pool, calibration_pending

    store, (pool, _) = pools
    registry = jobs.JobRegistry()
    report = build_pool(store, pool, tiny_config(calibrate=True), backbone=backbone, defer_calibration=True)
    ensemble = report.ensemble_id
    assert calibration_pending(store.get_ensemble(ensemble, with_weights=False).meta)
    assert jobs.calibration_status(store, ensemble, registry=registry) is None  # nothing runs yet
    job = jobs.calibrate_in_background(store, ensemble, registry=registry)
    assert job.kind == jobs.CALIBRATION and job.ensemble_id == ensemble and job.pool_name == "one"
    assert jobs.calibrate_in_background(store, ensemble, registry=registry).job_id == job.job_id
    assert registry.wait(job.job_id, WAIT_S).status == jobs.DONE
    assert not calibration_pending(store.get_ensemble(ensemble, with_weights=False).meta)
    assert jobs.calibration_status(store, ensemble, registry=registry) is None
    # nothing pending now: asking again starts nothing and gives the job that ran
    assert jobs.calibrate_in_background(store, ensemble, registry=registry).job_id == job.job_id

    # a calibration that fails is kept with its reason and not started again
    meta = store.get_ensemble(ensemble, with_weights=False).meta
    store.set_ensemble_meta(ensemble, replace(meta, train_groups=("nobody",), calibration=dict(PENDING_CALIBRATION)))
    failing = jobs.calibrate_in_background(store, ensemble, registry=registry)
    assert failing.job_id != job.job_id
    assert registry.wait(failing.job_id, WAIT_S).status == jobs.FAILED
    assert jobs.calibration_status(store, ensemble, registry=registry) == jobs.FAILED
    assert jobs.calibration_error(store, ensemble, registry=registry) == (
        f"pool {pool} has no labelled rows for groups ['nobody'] to train on")
    assert jobs.calibrate_in_background(store, ensemble, registry=registry).job_id == failing.job_id
    assert len(registry.jobs(store.path, kind=jobs.CALIBRATION)) == 2
