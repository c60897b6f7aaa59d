"""The `ray` build engine: a pool's shards -> embeddings -> ensemble -> Z with Ray Data.

Same steps and caches as the single-process build, laid out for pools beyond
one machine:

1. **read and validate**: ``ray.data.read_json`` / ``read_csv`` / ``read_parquet``
   over the shards, each batch checked by `hyre_engine.data`'s own validators
   (`preferences_from_records`), the checks that span rows (one text per pair_id,
   no judgement twice) on the driver. A bad shard fails with its file and row,
   located by reading that one file with `data.read_preferences`, and nothing is
   registered.
2. **de-duplicate** texts by `text_hash`; texts already embedded by this backbone
   (in the store's table or its shards) are not embedded again.
3. **embed** with ``map_batches`` over an actor pool, one backbone per actor
   (``num_gpus=1``, bfloat16 when the cluster has GPUs; CPU actors otherwise), and
   write Parquet shards (text_hash, backbone_id, vector).
4. **train** the ensemble on the driver, on the training rows (the single-process
   code, so the same rows give the same ensemble).
5. **predict** Z with a second ``map_batches`` and write Parquet shards
   (row_index, z), float16 above `shards.FLOAT16_ABOVE` pairs.
6. **register** the shards in the store (`store.shards`).
7. **differences**: the pool's D = phi(a) - phi(b) (n_pairs x dim float32, the
   personal head's input) stored next to Z on the driver, in chunks, only for rows
   that have none yet, and the distinct head functions counted: the single-process
   build's last step (`pipeline.finish_pool`).

Actors restart after a crash (``max_restarts``) and their batches are retried
(``max_task_retries``): a worker killed mid-job costs its batch, not the job.
Scheduling is Ray's; nothing here schedules work itself.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import json
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hyre_engine import ensemble as ens
from hyre_engine.backbone import CHUNK_BATCHES, DEFAULT_BATCH_SIZE
from hyre_engine.data import DataError, preferences_from_records, read_preferences
from hyre_engine.pipeline import (
    EMBED,
    PREDICT,
    BuildConfig,
    BuildReport,
    Progress,
    ensure_ensemble,
    finish_pool,
)
from hyre_engine.store import Store, text_hash
from hyre_engine.store.shards import safe_name, shard_root, z_dtype

# Shard extensions the Ray readers take, and the reader of each.
READERS = {".jsonl": "json", ".ndjson": "json", ".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
# A local Ray started by a build: small, because it shares its machine.
LOCAL_NUM_CPUS = 2
LOCAL_OBJECT_STORE_BYTES = 512 * 2**20
# Texts per embedding batch: the single-process chunk (64 x 4 = 256), so both builds pad
# alike; it keeps a CPU actor's batch to seconds and a GPU busy with a 2B model.
DEFAULT_EMBED_BATCH = DEFAULT_BATCH_SIZE * CHUNK_BATCHES
# Pairs per Z batch: the heads are a few small matrix products per pair.
DEFAULT_PREDICT_BATCH = 8192
# Rows per validation batch: large enough to amortise the per-batch work.
VALIDATE_BATCH = 4096
# Restarts of a crashed actor and retries of its batch before the job fails.
DEFAULT_MAX_RESTARTS = 3
DEFAULT_MAX_TASK_RETRIES = 3
# Ray adds a column of this name for include_paths; a pool column of that name would clash.
PATH_COLUMN = "path"
# The stage before the build's own: reading and validating the shards (seconds only).
READ = "read"
# How often the driver reads the workers' progress.
POLL_SECONDS = 0.2


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide the Ray build runs."""

    address: str | None = None  # None: start a local Ray of num_cpus CPUs (and stop it after)
    num_cpus: int = LOCAL_NUM_CPUS
    object_store_bytes: int = LOCAL_OBJECT_STORE_BYTES
    embed_batch_size: int = DEFAULT_EMBED_BATCH
    embed_actors: int | None = None  # None: one per GPU, else one (a local CPU Ray needs a CPU for reads)
    predict_batch_size: int = DEFAULT_PREDICT_BATCH
    predict_actors: int = 1
    max_restarts: int = DEFAULT_MAX_RESTARTS
    max_task_retries: int = DEFAULT_MAX_TASK_RETRIES
    threads_per_actor: int = 1  # torch threads in a CPU actor

    def __post_init__(self) -> None:
        for name in ("num_cpus", "embed_batch_size", "predict_batch_size", "predict_actors",
                     "threads_per_actor"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.embed_actors is not None and self.embed_actors < 1:
            raise ValueError(f"embed_actors must be >= 1, got {self.embed_actors}")


# A monitor sees the live job: called on the driver every POLL_SECONDS with the tracker.
Monitor = Callable[["_TrackerClient"], None]


@contextlib.contextmanager
def ray_session(options: RayOptions | None = None) -> Iterator[Any]:
    """Ray connected for the duration: joins ``options.address`` or starts a small local Ray.

    A Ray already initialised in this process is used as it is and left running; one
    started here is shut down on exit, so no Ray process outlives the build.
    """
    import ray

    options = options or RayOptions()
    started = False
    if not ray.is_initialized():
        kwargs: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False,
                                      configure_logging=False)
        if options.address:
            ray.init(address=options.address, **kwargs)
        else:
            ray.init(num_cpus=options.num_cpus, object_store_memory=options.object_store_bytes,
                     **kwargs)
        started = True
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.execution_options.preserve_order = True  # validated rows keep the files' order
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()


# ------------------------------------------------------------------ reading


def expand_pool(pattern: str | Path) -> list[Path]:
    """The shard files a path or glob names, sorted; ValueError when none or of an unknown kind."""
    text = str(pattern)
    paths = sorted(Path(p) for p in glob.glob(text)) if glob.has_magic(text) else [Path(text)]
    paths = [p for p in paths if p.is_file()] if glob.has_magic(text) else paths
    if not paths:
        raise FileNotFoundError(f"no pool files match {text!r}")
    for p in paths:
        if not p.is_file():
            raise FileNotFoundError(f"no such file: {str(p)!r}")
    kinds = {READERS.get(p.suffix.lower()) for p in paths}
    if None in kinds:
        bad = next(p for p in paths if p.suffix.lower() not in READERS)
        raise ValueError(f"{bad}: the ray engine reads {', '.join(sorted(READERS))} shards")
    if len(kinds) > 1:
        raise ValueError(f"{text}: shards mix formats ({', '.join(sorted(kinds))}); use one")
    return paths


def _columns_of(path: Path, kind: str) -> list[str]:
    """A shard's column names, read from its header / first record / footer only."""
    if kind == "csv":
        import csv

        with open(path, newline="", encoding="utf-8-sig") as f:
            return [h.strip() for h in next(csv.reader(f), [])]
    if kind == "parquet":
        import pyarrow.parquet as pq

        return list(pq.read_schema(path).names)
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                try:
                    return list(json.loads(line))
                except (json.JSONDecodeError, TypeError):
                    return []  # the validators will name the line
    return []


def _dataset(ray, paths: list[Path], kind: str):
    files = [str(p) for p in paths]
    if kind == "parquet":
        return ray.data.read_parquet(files, include_paths=True)
    if kind == "json":
        return ray.data.read_json(files, include_paths=True, lines=True)
    import pyarrow as pa
    from pyarrow import csv as pacsv

    # Every CSV cell is text, as in data.py's reader: "007" stays "007", "1" is not 1.
    names = {c for p in paths for c in _columns_of(p, "csv")}
    convert = pacsv.ConvertOptions(column_types={c: pa.string() for c in names},
                                   strings_can_be_null=False, quoted_strings_can_be_null=False)
    parse = pacsv.ParseOptions(newlines_in_values=True)
    return ray.data.read_csv(files, include_paths=True, convert_options=convert, parse_options=parse)


def _validate(batch: pd.DataFrame) -> pd.DataFrame:
    """One batch of raw rows -> the canonical table, by data.py's rules, per source file.

    A plain function, so Ray Data runs it as tasks on the session's pooled workers: an
    actor would start (and import) a fresh process for every read."""
    out = []
    for path, rows in batch.groupby(PATH_COLUMN, sort=False):
        records = rows.drop(columns=[PATH_COLUMN]).to_dict("records")
        records = [{k: _plain(v) for k, v in r.items()} for r in records]
        try:
            frame = preferences_from_records(records, name=str(path))
        except DataError as exc:
            # The record number is within this batch; the driver finds the file's row.
            raise ValueError(f"{_SHARD_ERROR}{path}\x1f{exc.reason}") from None
        frame["__path"] = str(path)
        out.append(frame)
    frame = pd.concat(out, ignore_index=True) if out else batch.iloc[:0]
    prompts, a, b = frame["prompt"].tolist(), frame["response_a"].tolist(), frame["response_b"].tolist()
    frame["hash_a"] = [text_hash(p, r) for p, r in zip(prompts, a, strict=True)]
    frame["hash_b"] = [text_hash(p, r) for p, r in zip(prompts, b, strict=True)]
    extra = [c for c in frame.columns if c not in _FIXED]
    frame["__meta"] = [json.dumps(m, default=str, sort_keys=True)
                       for m in frame[extra].to_dict("records")] if extra else "{}"
    return frame[list(_FIXED)]


_SHARD_ERROR = "hyre-shard-error:"
_FIXED = ("pair_id", "prompt", "response_a", "response_b", "label", "group", "annotator",
          "hash_a", "hash_b", "__path", "__meta")


def _plain(value: Any) -> Any:
    """Arrow/pandas scalars as the Python values data.py's checks expect (NaN stays NaN)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def read_pool(pattern: str | Path, *, options: RayOptions | None = None) -> pd.DataFrame:
    """The validated canonical table of a pool's shards, read and checked with Ray Data.

    Requires a Ray session (`ray_session`). Returns the columns of `data.read_preferences`
    (metadata columns folded into ``meta``, a JSON object per row) plus hash_a / hash_b.
    A bad shard raises `DataError` naming the file and the row.
    """
    import ray

    paths = expand_pool(pattern)
    kind = READERS[paths[0].suffix.lower()]
    for p in paths:
        if PATH_COLUMN in _columns_of(p, kind):
            raise DataError(f"the ray engine reserves the column name '{PATH_COLUMN}'; rename it",
                            path=str(p), column=PATH_COLUMN)
    try:
        ds = _dataset(ray, paths, kind).map_batches(
            _validate, batch_size=VALIDATE_BATCH, batch_format="pandas")
        frame = ds.to_pandas()
    except Exception as exc:  # a Ray task failed: say which file and row, by data.py's reader
        raise _locate(paths, exc) from None
    return _check_across_shards(frame, paths)


def _locate(paths: list[Path], exc: Exception) -> Exception:
    """The DataError (file, row) behind a failed read or validation, else a plain ValueError."""
    text = str(exc)
    named = [p for p in paths if f"{_SHARD_ERROR}{p}\x1f" in text or str(p) in text]
    for p in named + [p for p in paths if p not in named]:
        try:
            read_preferences(p, max_bytes=max(p.stat().st_size * 2, 1 << 20))
        except (DataError, FileNotFoundError) as located:
            return located
    reason = text.split(_SHARD_ERROR, 1)[-1].split("\x1f")[-1].strip().splitlines()
    return ValueError(f"{paths[0].parent}: could not read the pool ({reason[-1] if reason else text})")


def _check_across_shards(frame: pd.DataFrame, paths: list[Path]) -> pd.DataFrame:
    """data.py's checks that span batches: one text per pair_id (A/B flipped to the first
    order seen), and no (pair_id, group, annotator) judged twice."""
    if frame.empty:
        raise DataError("no rows", path=str(paths[0]))
    first = frame.drop_duplicates("pair_id")[["pair_id", "prompt", "response_a", "response_b"]]
    merged = frame[["pair_id", "prompt", "response_a", "response_b"]].merge(
        first, on="pair_id", suffixes=("", "_first"), how="left")
    same = ((merged["prompt"] == merged["prompt_first"]) & (merged["response_a"] == merged["response_a_first"])
            & (merged["response_b"] == merged["response_b_first"])).to_numpy()
    swapped = ((merged["prompt"] == merged["prompt_first"]) & (merged["response_a"] == merged["response_b_first"])
               & (merged["response_b"] == merged["response_a_first"])).to_numpy() & ~same
    if (~same & ~swapped).any():
        i = int(np.flatnonzero(~same & ~swapped)[0])
        raise _row_error(frame, i, f"pair_id {frame['pair_id'].iat[i]!r} has different texts "
                         "than where it first appears", column="prompt")
    if swapped.any():
        frame.loc[swapped, ["response_a", "response_b", "hash_a", "hash_b"]] = frame.loc[
            swapped, ["response_b", "response_a", "hash_b", "hash_a"]].to_numpy()
        frame.loc[swapped, "label"] = frame.loc[swapped, "label"].map({"a": "b", "b": "a"})
    dup = frame.duplicated(["pair_id", "group", "annotator"]).to_numpy()
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        raise _row_error(frame, i, f"duplicate judgement: pair_id {frame['pair_id'].iat[i]!r}, group "
                         f"{frame['group'].iat[i]!r}, annotator {frame['annotator'].iat[i]!r}",
                         column="pair_id")
    return frame


def _row_error(frame: pd.DataFrame, i: int, message: str, *, column: str) -> DataError:
    """A cross-shard error: data.py names the row when both rows are in one file."""
    path = Path(frame["__path"].iat[i])
    try:
        read_preferences(path, max_bytes=max(path.stat().st_size * 2, 1 << 20))
    except DataError as located:
        return located
    return DataError(message + " (in another shard)", path=str(path), column=column)


def canonical_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The validated rows as `Store.add_pool` takes them (metadata columns unfolded)."""
    meta = pd.DataFrame([json.loads(m) for m in frame["__meta"]], index=frame.index)
    base = frame[["pair_id", "prompt", "response_a", "response_b", "label", "group", "annotator"]]
    return pd.concat([base, meta], axis=1) if len(meta.columns) else base.copy()


# ------------------------------------------------------------------ progress and workers


class _Tracker:
    """A small actor the workers report to: batches done per stage, and who the workers are."""

    def __init__(self) -> None:
        self.done: dict[str, int] = {}
        self.workers: dict[str, list] = {}

    def add(self, stage: str, n: int) -> None:
        self.done[stage] = self.done.get(stage, 0) + n

    def hello(self, stage: str, handle) -> None:
        self.workers.setdefault(stage, []).append(handle)

    def state(self) -> tuple[dict[str, int], dict[str, list]]:
        return dict(self.done), {k: list(v) for k, v in self.workers.items()}


class _TrackerClient:
    """The driver's view of the tracker, given to a `Monitor`."""

    def __init__(self, handle) -> None:
        self.handle = handle
        self.done: dict[str, int] = {}
        self.workers: dict[str, list] = {}

    def refresh(self) -> None:
        import ray

        self.done, self.workers = ray.get(self.handle.state.remote())


class EmbedActor:
    """One backbone per actor: a batch of texts -> (text_hash, backbone_id, vector)."""

    def __init__(self, backbone: str | None, backbone_id: str, device: str, batch_size: int,
                 threads: int, tracker) -> None:
        import ray
        import torch

        from hyre_engine.backbone import load_backbone

        if device == "cpu":
            torch.set_num_threads(threads)
        self.backbone = load_backbone(backbone, device=device, batch_size=min(batch_size, 64))
        if self.backbone.id != backbone_id:
            raise RuntimeError(f"worker loaded backbone {self.backbone.id}, the driver {backbone_id}: "
                               "the model folder differs between machines")
        self.tracker = tracker
        if tracker is not None:
            tracker.hello.remote(EMBED, ray.get_runtime_context().current_actor)

    def __call__(self, batch: pd.DataFrame):
        import pyarrow as pa

        vectors = self.backbone.embed(batch["prompt"].tolist(), batch["response"].tolist())
        if self.tracker is not None:
            self.tracker.add.remote(EMBED, len(batch))
        return pa.table({
            "text_hash": pa.array(batch["text_hash"].tolist(), pa.string()),
            "backbone_id": pa.array([self.backbone.id] * len(batch), pa.string()),
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), vectors.shape[1]),
        })


class PredictActor:
    """The trained ensemble per actor: (row_index, xa, xb) -> (row_index, z)."""

    def __init__(self, weights: bytes, config_json: str, dtype: str, device: str, threads: int,
                 tracker) -> None:
        import ray
        import torch

        if device == "cpu":
            torch.set_num_threads(threads)
        self.model = ens.ensemble_from_bytes(weights, config_json, device=device)
        self.dtype = np.dtype(dtype)
        self.tracker = tracker
        if tracker is not None:
            tracker.hello.remote(PREDICT, ray.get_runtime_context().current_actor)

    def __call__(self, batch: dict[str, np.ndarray]):
        import pyarrow as pa

        z = ens.predict_pairs(self.model, np.stack(batch["xa"]), np.stack(batch["xb"]))
        if self.tracker is not None:
            self.tracker.add.remote(PREDICT, len(z))
        z = z.astype(self.dtype)
        return pa.table({
            "row_index": pa.array(np.asarray(batch["row_index"], dtype=np.int64)),
            "z": pa.FixedSizeListArray.from_arrays(pa.array(z.reshape(-1)), z.shape[1]),
        })


def _restart_args(options: RayOptions) -> Callable[[], dict[str, int]]:
    """Remote args of each actor: restart it after a crash, retry its batches."""
    return functools.partial(dict, max_restarts=options.max_restarts,
                             max_task_retries=options.max_task_retries)


def _gpus(ray) -> int:
    return int(ray.cluster_resources().get("GPU", 0))


def _run_stage(ray, stage: str, write: Callable[[], None], total: int, tracker: _TrackerClient,
               progress: Progress | None, monitor: Monitor | None) -> None:
    """Run ``write`` (a Ray job) in a thread; report progress and call the monitor meanwhile."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            write()
        except BaseException as exc:  # re-raised on the driver's thread below
            errors.append(exc)

    thread = threading.Thread(target=target, name=f"hyre-ray-{stage}", daemon=True)
    if progress:
        progress(stage, 0, total)
    thread.start()
    while thread.is_alive():
        thread.join(POLL_SECONDS)
        tracker.refresh()
        if progress:
            progress(stage, min(tracker.done.get(stage, 0), total), total)
        if monitor is not None:
            monitor(tracker)
    if errors:
        raise errors[0]
    if progress:
        progress(stage, total, total)


def _publish(tmp: Path, target: Path) -> list[Path]:
    """Move a finished job's Parquet files into the artefact folder; returns their new paths."""
    target.mkdir(parents=True, exist_ok=True)
    moved = []
    for f in sorted(tmp.glob("*.parquet")):
        dest = target / f"{uuid.uuid4().hex[:12]}-{f.name}"
        shutil.move(str(f), dest)
        moved.append(dest)
    shutil.rmtree(tmp, ignore_errors=True)
    return moved


def embed_missing(store: Store, pool_id: str, *, backbone: str | None,
                  backbone_id: str, options: RayOptions, progress: Progress | None = None,
                  monitor: Monitor | None = None) -> tuple[int, int]:
    """Embed the pool's texts this backbone has not embedded, as Parquet shards: (computed, reused)."""
    import ray

    texts = store.pool_texts(pool_id)
    todo_hashes = set(store.missing_embeddings(backbone_id, texts["text_hash"].tolist()))
    todo = texts[texts["text_hash"].isin(todo_hashes)]
    # Longest first, as Backbone.embed orders its chunks: with embed_batch_size equal to its
    # chunk, each batch pads exactly as the single-process build does, so the vectors match
    # to the bit, not only to float noise that training would amplify.
    length = todo["prompt"].str.len() + todo["response"].str.len()
    todo = todo.iloc[np.argsort(-length.to_numpy(), kind="stable")].reset_index(drop=True)
    if todo.empty:
        return 0, len(texts)
    gpus = _gpus(ray)
    n_actors = options.embed_actors or max(gpus, 1)
    device = "cuda" if gpus else "cpu"
    tracker = _TrackerClient(ray.remote(num_cpus=0)(_Tracker).remote())
    root = shard_root(store) / "embeddings" / safe_name(backbone_id)
    tmp = root.parent / f".tmp-{uuid.uuid4().hex}"
    size = options.embed_batch_size
    ds = ray.data.from_pandas([todo.iloc[o : o + size] for o in range(0, len(todo), size)])
    ds = ds.map_batches(
        EmbedActor,
        fn_constructor_args=(backbone, backbone_id, device, options.embed_batch_size,
                             options.threads_per_actor, tracker.handle),
        batch_size=options.embed_batch_size, batch_format="pandas",
        compute=ray.data.ActorPoolStrategy(size=n_actors),
        num_gpus=1 if gpus else 0, num_cpus=0 if gpus else 1,
        ray_remote_args_fn=_restart_args(options),
    )
    try:
        _run_stage(ray, EMBED, lambda: ds.write_parquet(str(tmp)), len(todo), tracker,
                   progress, monitor)
        files = _publish(tmp, root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        ray.kill(tracker.handle)
    store.register_embedding_shards(backbone_id, files)
    return len(todo), len(texts) - len(todo)


def predict_shards(store: Store, ensemble_id: str, pool_id: str, backbone_id: str,
                   *, options: RayOptions, progress: Progress | None = None,
                   monitor: Monitor | None = None) -> int:
    """Z of an ensemble on a pool by map_batches, written and registered as Parquet shards."""
    import pyarrow as pa
    import ray

    pairs = store.pool_pairs(pool_id, with_meta=False)
    xa = store.get_embeddings(backbone_id, pairs["hash_a"].tolist())
    xb = store.get_embeddings(backbone_id, pairs["hash_b"].tolist())
    record = store.get_ensemble(ensemble_id)
    config_json = json.dumps(record.meta.model_config)
    n_heads = int(record.meta.model_config["n_heads"])
    dtype = z_dtype(len(pairs))
    gpus = _gpus(ray)
    table = pa.table({
        "row_index": pa.array(pairs["row_index"].to_numpy(dtype=np.int64)),
        "xa": pa.FixedSizeListArray.from_arrays(pa.array(xa.reshape(-1)), xa.shape[1]),
        "xb": pa.FixedSizeListArray.from_arrays(pa.array(xb.reshape(-1)), xb.shape[1]),
    })
    ds = ray.data.from_arrow([table.slice(o, options.predict_batch_size)
                              for o in range(0, len(pairs), options.predict_batch_size)] or [table])
    tracker = _TrackerClient(ray.remote(num_cpus=0)(_Tracker).remote())
    ds = ds.map_batches(
        PredictActor,
        fn_constructor_args=(record.weights, config_json, dtype.name, "cuda" if gpus else "cpu",
                             options.threads_per_actor, tracker.handle),
        batch_size=options.predict_batch_size, batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=options.predict_actors),
        num_gpus=1 if gpus else 0, num_cpus=0 if gpus else 1,
        ray_remote_args_fn=_restart_args(options),
    )
    root = shard_root(store) / "predictions" / safe_name(ensemble_id) / safe_name(pool_id)
    tmp = root.parent / f".tmp-{uuid.uuid4().hex}"
    try:
        _run_stage(ray, PREDICT, lambda: ds.write_parquet(str(tmp)), len(pairs), tracker,
                   progress, monitor)
        old = sorted(root.glob("*")) if root.exists() else []
        files = _publish(tmp, root / uuid.uuid4().hex[:8])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        ray.kill(tracker.handle)
    store.register_prediction_shards(ensemble_id, pool_id, files, n_heads=n_heads, dtype=dtype)
    for path in old:  # the previous Z of this (ensemble, pool), now unregistered
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    return len(pairs)


# ------------------------------------------------------------------ the build


def build_pool_ray(
    store: Store,
    pattern: str | Path,
    config: BuildConfig | None = None,
    *,
    name: str | None = None,
    options: RayOptions | None = None,
    progress: Progress | None = None,
    monitor: Monitor | None = None,
) -> BuildReport:
    """Import (or reuse) a pool from its shards and build embeddings, ensemble and Z on Ray."""
    from hyre_engine.backbone import load_backbone

    config = config or BuildConfig()
    if config.finetune is not None:
        raise ValueError("the ray engine trains the heads on frozen embeddings; fine-tuning the "
                         "backbone needs the local engine")
    options = options or RayOptions()
    paths = expand_pool(pattern)
    name = name or paths[0].stem.split(".")[0]
    # The driver loads the backbone only for its id (the actors embed); the id must match theirs.
    backbone_id = load_backbone(config.backbone).id
    with ray_session(options):
        pools = store.list_pools()
        start = time.perf_counter()
        if len(pools) and name in set(pools["name"]):
            pool_id = store.get_pool(name).pool_id
        else:
            frame = read_pool(pattern, options=options)
            pool_id = store.add_pool(name, canonical_frame(frame), source=str(pattern))
        read_seconds = time.perf_counter() - start
        pairs = store.pool_pairs(pool_id, with_meta=False)
        report = BuildReport(pool_id=pool_id, backbone_id=backbone_id, ensemble_id="",
                             n_pairs=len(pairs), n_texts=0, n_train_rows=0)
        report.seconds[READ] = read_seconds

        start = time.perf_counter()
        report.embedded, report.embeddings_reused = embed_missing(
            store, pool_id, backbone=config.backbone, backbone_id=backbone_id,
            options=options, progress=progress, monitor=monitor)
        report.n_texts = report.embedded + report.embeddings_reused
        report.seconds[EMBED] = time.perf_counter() - start

        # the single-process code: the same training rows give the same ensemble
        ensure_ensemble(store, pool_id, pairs, config, backbone_id, report, progress)

        start = time.perf_counter()
        if not store.prediction_shard_files(report.ensemble_id, pool_id):
            predict_shards(store, report.ensemble_id, pool_id, backbone_id, options=options,
                           progress=progress, monitor=monitor)
            report.predicted = True
        report.seconds[PREDICT] = time.perf_counter() - start
        # D next to Z, as a single-process build stores it: the personal head needs it.
        finish_pool(store, pool_id, pairs, backbone_id, report)
    return report


__all__ = [
    "EmbedActor", "PredictActor", "RayOptions", "build_pool_ray", "canonical_frame", "embed_missing",
    "expand_pool", "predict_shards", "ray_session", "read_pool",
]
