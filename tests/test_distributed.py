"""The Ray build engine on a real local Ray (2 CPUs), against the single-process build."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ray = pytest.importorskip("ray")

from hyre_engine.data import DataError, read_preferences  # noqa: E402
from hyre_engine.demo import DEMO_DIR  # noqa: E402
from hyre_engine.distributed import RayOptions, build_pool_ray, expand_pool, read_pool  # noqa: E402
from hyre_engine.ensemble import predict_pairs  # noqa: E402
from hyre_engine.pipeline import BuildConfig, build_pool, load_model  # noqa: E402
from hyre_engine.store import Store  # noqa: E402

# A slice of the demo pool: 40 pairs judged by the crowd and one persona (~80 texts to embed).
N_PAIRS = 40
CONFIG = BuildConfig(n_heads=6, hidden=16, calibrate=False, train_groups=["crowd"])


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             object_store_memory=256 * 2**20)
    yield ray
    ray.shutdown()
    assert not ray.is_initialized()


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    """The demo slice as two JSONL shards (rows of one pair may sit in either)."""
    rows = [json.loads(line) for line in (DEMO_DIR / "pairs.jsonl").read_text().splitlines()]
    keep = list(dict.fromkeys(r["pair_id"] for r in rows))[:N_PAIRS]
    rows = [r for r in rows if r["pair_id"] in set(keep) and r["group"] in ("crowd", "maya")]
    folder = tmp_path_factory.mktemp("pool")
    for k in range(2):
        with open(folder / f"part-{k}.jsonl", "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows[k::2])
    return folder


@pytest.fixture(scope="module")
def single(shards, tmp_path_factory):
    """The single-process build of the same rows."""
    store = Store(tmp_path_factory.mktemp("single") / "hyre.duckdb")
    frame = pd.concat([read_preferences(p) for p in expand_pool(shards / "part-*.jsonl")],
                      ignore_index=True)
    report = build_pool(store, store.add_pool("pool", frame), CONFIG)
    yield store, report
    store.close()


def _arrays(store, report, *, sharded):
    pairs = store.pool_pairs(report.pool_id, with_meta=False)
    # the same store methods read the table and the shards
    emb = store.get_embeddings(report.backbone_id, pairs["hash_a"].tolist())
    z = store.get_head_predictions(report.ensemble_id, report.pool_id)
    if sharded:
        assert store.prediction_shard_files(report.ensemble_id, report.pool_id)
        assert store.embedding_shard_files(report.backbone_id)
    return pairs, emb, z


@pytest.mark.slow
def test_ray_build_equals_single_process_and_rebuild_embeds_nothing(local_ray, shards, single, tmp_path):
    store = Store(tmp_path / "ray.duckdb")
    seen = []
    report = build_pool_ray(store, str(shards / "part-*.jsonl"), CONFIG, name="pool",
                            progress=lambda stage, done, total: seen.append((stage, done, total)))
    assert report.embedded == single[1].embedded > 0 and report.trained and report.predicted
    assert {s for s, _, _ in seen} == {"embed", "train", "predict"}
    assert ("embed", report.embedded, report.embedded) in seen

    pairs, emb, z = _arrays(store, report, sharded=True)
    pairs1, emb1, z1 = _arrays(*single, sharded=False)
    assert pairs["pair_id"].tolist() == pairs1["pair_id"].tolist()
    np.testing.assert_allclose(emb, emb1, atol=1e-5)
    assert z.shape == z1.shape == (len(pairs), CONFIG.n_heads)
    np.testing.assert_allclose(z, z1, atol=1e-5)
    # DuckDB reads the registered shards; the store's own tables hold none of it
    assert store._cursor().execute("SELECT count(*) FROM embeddings").fetchall() == [(0,)]
    assert store._cursor().execute("SELECT count(*) FROM head_predictions").fetchall() == [(0,)]
    np.testing.assert_array_equal(store.get_head_predictions(
        report.ensemble_id, report.pool_id, mmap=True), z)
    # D is stored next to Z, as the single-process build stores it (the personal head's input)
    d = store.get_pair_differences(report.backbone_id, report.pool_id)
    assert report.differences == len(pairs) and d.shape == (len(pairs), emb.shape[1])
    np.testing.assert_allclose(d, single[0].get_pair_differences(single[1].backbone_id, single[1].pool_id),
                               atol=1e-5)
    assert report.distinct_heads == single[1].distinct_heads > 0

    store.stats.reset()
    again = build_pool_ray(store, str(shards / "part-*.jsonl"), CONFIG, name="pool")
    assert (again.embedded, again.embeddings_reused) == (0, report.n_texts)
    assert not again.trained and not again.predicted and again.differences == 0
    assert store.stats.embeddings_added == store.stats.prediction_rows_added == 0
    assert store.stats.difference_rows_added == 0
    store.close()


@pytest.mark.slow
def test_worker_killed_mid_job_completes_with_the_same_result(local_ray, shards, single, tmp_path):
    """The embedding actor is killed mid-stage; the job completes, the embeddings equal the
    undisturbed single-process ones and Z equals the heads run on the driver."""
    store = Store(tmp_path / "ray.duckdb")
    killed: dict[str, int] = {}
    hellos: dict[str, int] = {}

    def chaos(tracker):
        workers = tracker.workers.get("embed", [])
        hellos["embed"] = max(hellos.get("embed", 0), len(workers))
        if not killed and workers and tracker.done.get("embed", 0) >= 8:
            ray.kill(workers[0], no_restart=False)  # the actor dies; Ray restarts it
            killed["embed"] = tracker.done["embed"]

    options = RayOptions(embed_batch_size=4, embed_actors=1, max_restarts=2, max_task_retries=2)
    report = build_pool_ray(store, str(shards / "part-*.jsonl"), CONFIG, name="pool",
                            options=options, monitor=chaos)
    assert killed.get("embed", report.embedded) < report.embedded, "the kill must land mid-job"
    assert hellos == {"embed": 2}, "the killed actor was restarted once"

    pairs, emb, z = _arrays(store, report, sharded=True)
    _, emb1, _ = _arrays(*single, sharded=False)
    np.testing.assert_allclose(emb, emb1, atol=1e-5)
    xa = store.get_embeddings(report.backbone_id, pairs["hash_a"].tolist())
    xb = store.get_embeddings(report.backbone_id, pairs["hash_b"].tolist())
    undisturbed = predict_pairs(load_model(store, report.ensemble_id), xa, xb)
    np.testing.assert_allclose(z, undisturbed, atol=1e-6)
    store.close()


def test_bad_shard_names_file_and_row_and_registers_nothing(local_ray, shards, tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    good = (shards / "part-0.jsonl").read_text().splitlines()
    (folder / "part-0.jsonl").write_text("\n".join(good) + "\n")
    broken = [json.loads(line) for line in good[:5]]
    broken[2]["label"] = "c"
    (folder / "part-1.jsonl").write_text("".join(json.dumps(r) + "\n" for r in broken))
    store = Store(tmp_path / "ray.duckdb")
    with pytest.raises(DataError, match=r"part-1\.jsonl, line 3, column 'label': label must be 'a' or 'b'"):
        build_pool_ray(store, str(folder / "*.jsonl"), CONFIG, name="pool")
    assert store.list_pools().empty
    assert store._cursor().execute("SELECT count(*) FROM embedding_shards").fetchall() == [(0,)]
    assert not list((tmp_path / "ray.duckdb.shards").glob("**/*.parquet"))
    store.close()


def test_malformed_json_and_csv_cells_follow_data_rules(local_ray, tmp_path):
    (tmp_path / "a.jsonl").write_text('{"prompt": "p", "chosen": "x", "rejected": "y"}\n{"prompt": \n')
    with pytest.raises(DataError, match=r"a\.jsonl, line 2: malformed JSON"):
        read_pool(tmp_path / "a.jsonl")
    # CSV cells are text: "007" and "1" stay strings, as data.py reads them
    csv_dir = tmp_path / "csv"
    csv_dir.mkdir()
    (csv_dir / "p.csv").write_text("prompt,chosen,rejected,group\nq,007,1,g1\nq2,\"multi\nline\",b,g2\n")
    frame = read_pool(csv_dir / "p.csv")
    expected = read_preferences(csv_dir / "p.csv")
    assert frame["response_a"].tolist() == expected["response_a"].tolist()
    assert frame["label"].tolist() == expected["label"].tolist()
    assert sorted(frame["response_a"].tolist() + frame["response_b"].tolist()) == \
        ["007", "1", "b", "multi\nline"]


def test_expand_pool_refuses_what_it_cannot_read(tmp_path):
    with pytest.raises(FileNotFoundError, match="no pool files match"):
        expand_pool(tmp_path / "*.jsonl")
    (tmp_path / "x.json").write_text("[]")
    with pytest.raises(ValueError, match="the ray engine reads"):
        expand_pool(tmp_path / "x.json")
    with pytest.raises(ValueError, match="num_cpus must be >= 1"):
        RayOptions(num_cpus=0)


def test_cli_ray_options_need_the_ray_engine(tmp_path, capsys):
    from hyre_engine.cli import main

    pool = tmp_path / "p.jsonl"
    pool.write_text('{"prompt": "p", "chosen": "x", "rejected": "y"}\n')
    code = main(["build", "--pool", str(pool), "--db", str(tmp_path / "x.duckdb"),
                 "--address", "ray://nowhere:10001"])
    assert code == 2
    assert "need --engine ray" in capsys.readouterr().err
