"""Command line: ``python -m hyre_engine <command> ...``; every argparse definition lives here.

Each command is a name, a one-line help, a function that adds its options and a
function that runs it. Only the command being run has its options added, and
each command imports the modules it needs when it runs: ``--help`` and a
command's parser never pay for torch, duckdb or pandas they do not use.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

# -- shared options ---------------------------------------------------------------


def add_ensemble_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that say which store and which ensemble (shared by `build` and `evaluate`)."""
    from hyre_engine import ensemble as ens
    from hyre_engine.pipeline import DEFAULT_ANNOTATOR_FRACTION

    parser.add_argument("--db", help="DuckDB file (default: $HYRE_DB or data/hyre.duckdb)")
    parser.add_argument("--backbone", help="local model folder (default: embedded all-MiniLM-L6-v2)")
    parser.add_argument("--kind", default="shared", choices=list(ens.KINDS))
    parser.add_argument("--heads", type=int, default=ens.DEFAULT_HEADS)
    parser.add_argument("--hidden", type=int, default=ens.DEFAULT_HIDDEN)
    parser.add_argument("--prior-scale", type=float, default=ens.DEFAULT_PRIOR_SCALE)
    parser.add_argument(
        "--annotator-fraction",
        type=float,
        default=DEFAULT_ANNOTATOR_FRACTION,
        help="fraction of training annotators each head sees (0 or less: all rows for every head)",
    )
    parser.add_argument(
        "--no-calibrate",
        action="store_true",
        help="keep beta at its default instead of calibrating it on held-out training annotators",
    )
    parser.add_argument("--seed", type=int, default=0)


def add_finetune_arguments(parser: argparse.ArgumentParser) -> None:
    """`build --finetune-backbone` and the settings of the joint fine-tuning."""
    from hyre_engine import joint_training as jt

    group = parser.add_argument_group(
        "joint fine-tuning", "train the backbone together with the heads (minutes to hours on a CPU)")
    group.add_argument("--finetune-backbone", action="store_true",
                       help="fine-tune the backbone with the heads; the result is a new backbone id")
    group.add_argument("--finetune-mode", choices=jt.MODES, default="auto",
                       help="full weights, LoRA adapters, or auto: full up to "
                       f"{jt.FULL_FINETUNE_MAX_PARAMS // 1_000_000}M encoder parameters")
    group.add_argument("--backbone-lr", type=float, default=None,
                       help=f"default {jt.DEFAULT_BACKBONE_LR:g} (full) or {jt.DEFAULT_LORA_LR:g} (LoRA)")
    group.add_argument("--head-lr", type=float, default=jt.DEFAULT_HEAD_LR)
    group.add_argument("--epochs", type=int, default=jt.DEFAULT_EPOCHS)
    group.add_argument("--max-length", type=int, default=None,
                       help="tokens per text (default: the backbone's window)")
    group.add_argument("--batch-pairs", type=int, default=jt.DEFAULT_BATCH_PAIRS, help="pairs per step")
    group.add_argument("--grad-accum", type=int, default=jt.DEFAULT_GRAD_ACCUM,
                       help="steps whose gradients add up before each update")
    group.add_argument("--val-fraction", type=float, default=jt.DEFAULT_VAL_FRACTION,
                       help="share of the training pairs that scores each epoch (the best epoch is kept)")
    group.add_argument("--lora-r", type=int, default=jt.DEFAULT_LORA_R)
    group.add_argument("--lora-targets", default=None,
                       help="comma-separated module names LoRA adapts (default: by architecture)")
    group.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None,
                       help="bf16 autocast of the forward passes (default: on for CUDA only; --bf16 "
                       "also on a CPU)")
    group.add_argument("--gradient-checkpointing", action=argparse.BooleanOptionalAction, default=None,
                       help="recompute the encoder's activations in the backward pass instead of keeping "
                       "them (default: on for CUDA only)")


def finetune_from_args(args: argparse.Namespace):
    """The JointTrainingConfig of `add_finetune_arguments`' options, or None without --finetune-backbone."""
    if not getattr(args, "finetune_backbone", False):
        return None
    from hyre_engine.joint_training import JointTrainingConfig

    return JointTrainingConfig(
        mode=args.finetune_mode, backbone_lr=args.backbone_lr, head_lr=args.head_lr, epochs=args.epochs,
        max_length=args.max_length, batch_pairs=args.batch_pairs, grad_accum=args.grad_accum,
        val_fraction=args.val_fraction, lora_r=args.lora_r,
        lora_targets=args.lora_targets.split(",") if args.lora_targets else None,
        bf16=args.bf16, gradient_checkpointing=args.gradient_checkpointing, seed=args.seed,
    )


def config_from_args(args: argparse.Namespace, *, train_groups: list[str] | None = None):
    """The BuildConfig that `add_ensemble_arguments`' options describe."""
    from hyre_engine.pipeline import BuildConfig

    fraction = args.annotator_fraction
    return BuildConfig(
        backbone=args.backbone,
        kind=args.kind,
        n_heads=args.heads,
        hidden=args.hidden,
        prior_scale=args.prior_scale,
        train_groups=train_groups,
        annotator_fraction=fraction if fraction and fraction > 0 else None,
        seed=args.seed,
        calibrate=not args.no_calibrate,
        finetune=finetune_from_args(args),
    )


def _open_store(args: argparse.Namespace):
    from hyre_engine.store import Store, default_db_path

    return Store(args.db or default_db_path())


def _write_json(path: Path | None, result: dict) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {path}")


def _tqdm_progress():
    """(progress callback drawing one tqdm bar per stage, close())."""
    from tqdm import tqdm

    bars: dict = {}

    def progress(stage: str, done: int, total: int) -> None:
        bar = bars.get(stage)
        if bar is None:
            bar = bars[stage] = tqdm(total=total, desc=stage, unit="it", leave=True)
        # update() rather than setting n: tqdm's rate and ETA come from the increments
        bar.update(max(done - bar.n, 0))

    def close() -> None:
        for bar in bars.values():
            bar.close()

    return progress, close


# -- build ----------------------------------------------------------------------------


# How a build runs: in this process, or as Ray Data jobs (a local Ray, or --address).
ENGINES = ("local", "ray")


def _build_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pool", required=True, type=Path,
                        help="preference file (JSONL/CSV/Parquet); with --engine ray a path or glob "
                        "of JSONL, CSV or Parquet shards")
    parser.add_argument("--name", help="pool name in the store (default: the file's stem)")
    parser.add_argument("--format", default="auto", help="auto, design, hh-rlhf, llmbar, ratings")
    parser.add_argument(
        "--replace", action="store_true",
        help="replace a pool of the same name whose content differs (default: refuse)",
    )
    parser.add_argument(
        "--train-groups", help="comma-separated groups whose rows train the ensemble (default: all)"
    )
    parser.add_argument("--engine", default="local", choices=ENGINES,
                        help="local: this process (default); ray: Ray Data batch inference")
    parser.add_argument("--address", help="Ray cluster to join (default: start a local 2-CPU Ray)")
    parser.add_argument("--embed-batch-size", type=int, default=None,
                        help="texts per embedding batch (ray engine)")
    parser.add_argument("--embed-actors", type=int, default=None,
                        help="embedding actors (ray engine; default: one per GPU, else one)")
    parser.add_argument(
        "--embedding-backend", default="auto", choices=("auto", "torch", "onnx", "onnx-int8"),
        help="how the default sentence-transformers backbone runs on a CPU (auto: onnx-int8 for a pool of "
        "at least $HYRE_ONNX_AUTO_MIN_TEXTS texts, default 2000, where it is ~2.5x faster; torch below, "
        "where the one-off export would not pay off); exports are cached, vectors per backend",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars on stderr")
    add_ensemble_arguments(parser)
    add_finetune_arguments(parser)


def _print_epoch(p) -> None:
    """One line per finished fine-tuning epoch: its validation scores and the time left."""
    if p.val_loss is not None:
        print(f"epoch {p.epoch}/{p.epochs}: validation loss {p.val_loss:.4f}, accuracy "
              f"{p.val_accuracy:.3f}; about {p.eta / 60:.1f} min left", file=sys.stderr, flush=True)


def _run_build_ray(args: argparse.Namespace, config) -> int:
    from dataclasses import asdict

    from hyre_engine.distributed import DEFAULT_EMBED_BATCH, RayOptions, build_pool_ray

    if args.format != "auto":
        raise ValueError("--format applies to the local engine; the ray engine reads the "
                         "canonical columns (prompt with response_a/response_b/label or chosen/rejected)")
    options = RayOptions(address=args.address,
                         embed_batch_size=args.embed_batch_size or DEFAULT_EMBED_BATCH,
                         embed_actors=args.embed_actors)
    store = _open_store(args)
    progress, close = _tqdm_progress()
    try:
        report = build_pool_ray(store, str(args.pool), config, name=args.name, options=options,
                                progress=progress)
    finally:
        close()
    print(report.summary())
    print(json.dumps({k: v for k, v in asdict(report).items() if k != "seconds"}))
    return 0


def _print_cleaning(frame) -> None:
    from hyre_engine.data import describe_cleaning

    cleaning = describe_cleaning(frame)
    if cleaning:
        print(f"cleaned: {cleaning}")


# -- import ---------------------------------------------------------------------------


def _import_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, help="preference file (JSONL, JSON, CSV or Parquet, optionally .gz)")
    parser.add_argument("--name", help="pool name (default: the file's stem)")
    parser.add_argument("--format", default="auto", help="auto, design, hh-rlhf, llmbar, ratings")
    parser.add_argument("--replace", action="store_true", help="replace a pool of the same name")
    parser.add_argument("--db", help="DuckDB file (default: $HYRE_DB or data/hyre.duckdb)")


def _run_import(args: argparse.Namespace) -> int:
    from hyre_engine.data import read_preferences

    frame = read_preferences(args.file, format=args.format)  # bad input fails before the store opens
    name = args.name or args.file.name.split(".")[0]
    store = _open_store(args)
    try:
        pool_id = store.add_pool(name, frame, source=str(args.file), replace=args.replace)
        n_pairs = store.n_pairs(pool_id)
    finally:
        store.close()
    print(f"imported {len(frame)} judgements ({n_pairs} pairs) from {args.file} as pool '{name}'")
    _print_cleaning(frame)
    return 0


def _run_build(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from hyre_engine.data import read_preferences
    from hyre_engine.pipeline import build_pool, same_content
    from hyre_engine.store import default_db_path

    config = config_from_args(
        args, train_groups=args.train_groups.split(",") if args.train_groups else None
    )
    if args.engine == "ray":
        return _run_build_ray(args, config)
    if args.address or args.embed_batch_size or args.embed_actors:
        raise ValueError("--address, --embed-batch-size and --embed-actors need --engine ray")
    frame = read_preferences(args.pool, format=args.format)  # bad input fails before the store opens
    store = _open_store(args)
    name = args.name or args.pool.stem.split(".")[0]
    exists = name in set(store.list_pools()["name"])
    if exists and same_content(store, store.get_pool(name).pool_id, frame):
        pool_id = store.get_pool(name).pool_id
        print(f"pool '{name}' already in the store: reusing it (same judgements)")
    elif exists and not args.replace:
        raise ValueError(
            f"a pool named {name!r} already exists with different content than {args.pool}: "
            "pass --replace to replace it (its ensembles, predictions and sessions go), "
            "or --name to import it under another name"
        )
    else:
        pool_id = store.add_pool(name, frame, source=str(args.pool), replace=exists)
        verb = "replaced the pool with" if exists else "imported"
        print(f"{verb} {len(frame)} rows from {args.pool} as pool '{name}'")
        _print_cleaning(frame)
    backbone = None
    if args.embedding_backend != "auto" and not (args.embedding_backend == "torch" and config.finetune):  # auto: auto_backend
        from hyre_engine.backbone import load_backbone

        db_path = Path(args.db or default_db_path())
        backbone = load_backbone(
            config.backbone, backend=args.embedding_backend, cache_dir=db_path.parent / "onnx-cache"
        )
    progress, close = _tqdm_progress() if not args.quiet else (None, lambda: None)
    tuning = config.finetune is not None
    try:
        # fine-tuning steps get one tqdm bar per epoch (with its ETA) from joint_training
        report = build_pool(
            store, pool_id, config, backbone=backbone,
            progress=(lambda stage, done, total: stage != "finetune" and progress(stage, done, total))
            if progress is not None else None,
            show_progress_bar=tuning and not args.quiet,
            finetune_progress=_print_epoch if tuning and not args.quiet else None,
        )
    except KeyboardInterrupt:
        print("\ninterrupted: the fine-tuning keeps its last finished epoch; run the same command "
              "again to resume from it", file=sys.stderr)
        return 130
    finally:
        close()
    print(report.summary())
    print(json.dumps({k: v for k, v in asdict(report).items() if k != "seconds"}))
    return 0


# -- evaluate -------------------------------------------------------------------------


def _evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    from hyre_engine.protocol import ALL_METHODS, DEFAULT_N, DEFAULT_SEEDS, LOSSES, STRATEGIES

    parser.add_argument("--train", required=True, type=Path)
    parser.add_argument("--target", required=True, type=Path)
    parser.add_argument("--format", default="auto", help="format of both files (auto, design, hh-rlhf, llmbar, ratings)")
    parser.add_argument("--n", default=",".join(map(str, DEFAULT_N)), help="comma-separated numbers of labels")
    parser.add_argument("--seeds", type=int, default=DEFAULT_SEEDS)
    parser.add_argument("--strategy", default="random", choices=STRATEGIES)
    parser.add_argument("--loss", default="zero-one", choices=LOSSES, help="reweighting loss")
    parser.add_argument("--beta", type=float, help="reweighting temperature (default: the ensemble's)")
    parser.add_argument("--lambda", dest="lam", type=_positive_float,
                        help="prior precision of the personal head (default: the ensemble's, else 0.1)")
    parser.add_argument("--rho", type=_non_negative_float,
                        help="strength of the personal head's structured prior, from how training annotators "
                        "deviate (0: isotropic; default: the ensemble's calibrated one, else 0)")
    parser.add_argument("--methods", default=",".join(ALL_METHODS))
    parser.add_argument("--jobs", type=_positive_int, default=1,
                        help="evaluate target groups on this many processes (same results; default 1)")
    parser.add_argument("--finetune-stride", type=_positive_int, default=None,
                        help="the fine-tuning baseline's 100 Adam steps on a time grid this much coarser "
                        "(default 5: a fifth of the cost, accuracy within 0.0005 of every step on issue 14's "
                        "file; 1: every step, exact; docs/results.md)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars on stderr")
    add_ensemble_arguments(parser)
    parser.add_argument("--json", type=Path,
                        help="write the results here; '-': to stdout, and the table to stderr")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


def _run_evaluate(args: argparse.Namespace) -> int:
    from hyre_engine.evaluate import evaluate_pools, import_file
    from hyre_engine.protocol import check_methods, format_table

    n_values = [int(v) for v in args.n.split(",") if v.strip()]
    methods = check_methods([m.strip() for m in args.methods.split(",") if m.strip()])
    store = _open_store(args)
    train_pool = import_file(store, args.train, format=args.format)
    target_pool = import_file(store, args.target, format=args.format)
    progress, close = (None, lambda: None) if args.quiet else _tqdm_progress()
    try:
        result = evaluate_pools(
            store, train_pool, target_pool, config=config_from_args(args), n_values=n_values,
            seeds=args.seeds, strategy=args.strategy, loss=args.loss, beta=args.beta, lam=args.lam,
            rho=args.rho, methods=methods, progress=progress, jobs=args.jobs,
            **({} if args.finetune_stride is None else {"finetune_stride": args.finetune_stride}),
        )
    finally:
        close()
    table = format_table(result, title=f"{len(result['groups'])} target groups, {args.seeds} seeds, "
                         f"strategy {args.strategy}, beta {result['beta']:g} ({result['beta_source']}), "
                         f"lambda {result['lambda']:g} ({result['lambda_source']}), "
                         f"rho {result['rho']:g} ({result['rho_source']})")
    if str(args.json) == "-":  # stdout is the JSON alone
        if not args.quiet:
            print(table, file=sys.stderr)
        print(json.dumps(result, indent=1))
        return 0
    print(table)
    _write_json(args.json, result)
    return 0


# -- repro ----------------------------------------------------------------------------


def _repro_arguments(parser: argparse.ArgumentParser) -> None:
    from hyre_engine.experiments import (
        DEFAULT_SEEDS,
        EXPERIMENTS,
        REPRO_THREADS,
        UCI_DEFAULT_SEEDS,
        UCI_DIR_ENV_VAR,
    )

    parser.add_argument("name", choices=EXPERIMENTS)
    parser.add_argument("--seeds", type=int, default=None,
                        help=f"number of seeds (default {DEFAULT_SEEDS}; uci {UCI_DEFAULT_SEEDS})")
    parser.add_argument("--json", type=Path, help="write the result as JSON here")
    parser.add_argument("--html", type=Path,
                        help="gp: the figure's path (default: next to --json, .html)")
    parser.add_argument("--data", type=Path, default=None,
                        help=f"uci: folder with energy/, kin8nm/, power-plant/ (default: ${UCI_DIR_ENV_VAR})")
    parser.add_argument("--quick", action="store_true", help="small sizes (tests, smoke runs)")
    parser.add_argument("--verbose", action="store_true", help="progress lines on stderr")
    parser.add_argument("--threads", type=int, default=REPRO_THREADS,
                        help=f"torch CPU threads (default {REPRO_THREADS}; 0 leaves torch's choice)")


def _run_repro(args: argparse.Namespace) -> int:
    import time

    from hyre_engine.experiments import format_table, run_experiment

    if args.threads < 0:
        raise ValueError(f"--threads must be >= 0, got {args.threads}")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    html = args.html
    if html is None and args.name == "gp" and args.json is not None:
        html = args.json.with_suffix(".html")
    log = (lambda msg: print(msg, file=sys.stderr, flush=True)) if args.verbose else None
    t0 = time.perf_counter()
    result = run_experiment(args.name, seeds=args.seeds, quick=args.quick, data_dir=args.data,
                            html_path=html, log=log)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    print(format_table(result))
    _write_json(args.json, result)
    return 0


# -- demo-data ------------------------------------------------------------------------


def _demo_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--responses", default=None, help="default: the shipped demo responses")
    parser.add_argument("--personas", default=None, help="default: the shipped demo personas")
    parser.add_argument("--out", default=None, help="pairs file to write (default: the shipped pairs file)")
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 if --out differs from what would be generated",
    )
    parser.add_argument(
        "--matrix",
        action="store_true",
        help="also print the persona agreement matrix (markdown, percent)",
    )
    parser.add_argument(
        "--embeddings",
        action="store_true",
        help="also embed the shipped pool's texts with the installed default model and write "
        "them next to it (what a first launch uses instead of embedding them); with --check, "
        "compare the shipped file with what the model gives",
    )


def _run_demo_data(args: argparse.Namespace) -> int:
    from hyre_engine import demo

    out = demo.PAIRS_FILE if args.out is None else Path(args.out)
    text = demo.build_pairs_text(responses_path=args.responses, personas_path=args.personas)
    n_rows = text.count("\n")
    if args.check:
        current = out.read_text(encoding="utf-8") if out.exists() else None
        if current != text:
            print(f"{out} is out of date: run `python -m hyre_engine demo-data`", file=sys.stderr)
            return 1
        print(f"{out} is up to date ({n_rows} rows)")
    else:
        out.write_text(text, encoding="utf-8", newline="\n")
        print(f"wrote {n_rows} rows to {out}")
    if args.matrix:
        rows = [json.loads(line) for line in text.splitlines()]
        print(demo.format_agreement(*demo.agreement_matrix(rows)))
    if args.embeddings:
        return _demo_embeddings(check=args.check)
    return 0


def _demo_embeddings(*, check: bool) -> int:
    """Write (or check) demo_data/embeddings.safetensors from the shipped pairs and the default model."""
    import tempfile

    import numpy as np

    from hyre_engine import demo, demo_embeddings
    from hyre_engine.backbone import load_backbone
    from hyre_engine.store import Store

    backbone = load_backbone(None)
    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "demo.duckdb") as store:
        pool_id = demo.import_demo_pool(store)
        target = demo_embeddings.EMBEDDINGS_FILE
        if not check:
            n = demo_embeddings.write(store, pool_id, backbone, target)
            print(f"wrote {n} vectors of {backbone.id} to {target}")
            return 0
        fresh = Path(tmp) / "fresh.safetensors"
        demo_embeddings.write(store, pool_id, backbone, fresh)
        new_id, new_hashes, new = demo_embeddings.read(fresh)
        old_id, old_hashes, old = demo_embeddings.read(target)
        if (old_id, old_hashes) != (new_id, new_hashes) or old.shape != new.shape:
            print(f"{target} is out of date (its backbone or texts differ): "
                  "run `python -m hyre_engine demo-data --embeddings`", file=sys.stderr)
            return 1
        worst = float(np.abs(old - new).max())
        if worst > demo_embeddings.CHECK_TOLERANCE:
            print(f"{target} differs from the model's vectors by up to {worst:.2g}: "
                  "run `python -m hyre_engine demo-data --embeddings`", file=sys.stderr)
            return 1
        print(f"{target} is up to date ({len(old_hashes)} vectors, largest difference {worst:.1g})")
    return 0


# -- export ---------------------------------------------------------------------------


def _export_arguments(parser: argparse.ArgumentParser) -> None:
    from hyre_engine.export import FORMATS

    parser.add_argument("--db", help="DuckDB file (default: $HYRE_DB or data/hyre.duckdb)")
    parser.add_argument("--out", required=True, type=Path, help="folder to write the files into")
    parser.add_argument("--user", help="only this user's labels (default: every user)")
    parser.add_argument("--pool", help="only this pool, by name or id (default: every pool)")
    parser.add_argument(
        "--formats", default=",".join(FORMATS), help=f"comma-separated, among {', '.join(FORMATS)}"
    )
    parser.add_argument(
        "--include-personas", action="store_true",
        help="also export simulated personas' sessions (annotator: the persona)",
    )


def _run_export(args: argparse.Namespace) -> int:
    from hyre_engine.export import export_labels

    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    report = export_labels(
        _open_store(args), args.out, user=args.user, pool=args.pool, formats=formats,
        include_personas=args.include_personas,
    )
    print(report.summary())
    return 0


# -- users ----------------------------------------------------------------------------


def _users_arguments(parser: argparse.ArgumentParser) -> None:
    from hyre_engine.auth import ANNOTATOR, ROLES, USERS_FILE_ENV

    parser.add_argument("--file", help=f"users file (default: ${USERS_FILE_ENV} or data/users.json)")
    sub = parser.add_subparsers(dest="users_command", required=True, metavar="ACTION")
    add = sub.add_parser("add", help="add a user (asks for the password twice)")
    add.add_argument("name")
    add.add_argument("--role", choices=ROLES, default=ANNOTATOR)
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    add.add_argument("--replace", action="store_true", help="change an existing user's password or role")
    remove = sub.add_parser("remove", help="remove a user")
    remove.add_argument("name")
    sub.add_parser("list", help="list users and roles")


def _run_users(args: argparse.Namespace) -> int:
    import getpass

    from hyre_engine.auth import AuthError, UsersFile

    users = UsersFile(args.file)
    if args.users_command == "list":
        for user in users.users():
            print(f"{user.name}\t{user.role}")
        return 0
    if args.users_command == "remove":
        users.remove(args.name)
        print(f"removed user {args.name!r} from {users.path}")
        return 0
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass(f"password for {args.name}: ")
        if getpass.getpass("again: ") != password:
            raise AuthError("the two passwords differ")
    user = users.add(args.name, password, role=args.role, replace=args.replace)
    print(f"{'updated' if args.replace else 'added'} {user.role} {user.name!r} in {users.path}")
    return 0


# -- the commands ---------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    help: str
    description: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


COMMANDS: dict[str, Command] = {
    "demo-data": Command(
        "rebuild data/demo/pairs.jsonl from the demo responses and personas",
        "Label every pair of demo responses per persona and by the crowd.",
        _demo_data_arguments, _run_demo_data,
    ),
    "repro": Command(
        "reproduce the paper's synthetic and UCI experiments",
        "Reproduce one of the paper's experiments and print its table.",
        _repro_arguments, _run_repro,
    ),
    "build": Command(
        "import a preference file, embed it, train the ensemble and cache its predictions",
        "Import a preference file into the store (or reuse it), embed its texts, "
        "train the ensemble on its training rows and cache the head predictions Z.",
        _build_arguments, _run_build,
    ),
    "import": Command(
        "validate a preference file and store it as a pool (no embedding or training)",
        "Read and validate a preference file, then store it as a pool. Bad input ends with "
        "one error line naming the file and line, and leaves the store unchanged.",
        _import_arguments, _run_import,
    ),
    "evaluate": Command(
        "accuracy vs number of labels for every group of a target file",
        "Train the ensemble on --train (aggregate), then for every group of --target "
        "adapt with n labels and measure accuracy on the group's other rows.",
        _evaluate_arguments, _run_evaluate,
    ),
    "export": Command(
        "write people's labels as a dataset (TRL / RewardBench, pair format, datasets)",
        "Export the labels given in labelling sessions, per user, per pool or all: TRL / "
        "RewardBench prompt, chosen, rejected (JSONL, Parquet), the project's pair format with "
        "group and annotator, and a datasets.Dataset saved to disk. Ties, both bad, can't judge "
        "and skips go to <name>.no_preference.jsonl (and the pair file's judgement column); comments "
        "and flags on pairs not labelled go to <name>.unlabelled_notes.jsonl.",
        _export_arguments, _run_export,
    ),
    "users": Command(
        "add, remove or list the app's local users (argon2 password hashes)",
        "Manage the local users file the app signs people in with ($HYRE_USERS, "
        "default data/users.json).",
        _users_arguments, _run_users,
    ),
}


def build_parser(commands: Iterable[str] | None = None) -> argparse.ArgumentParser:
    """The parser, with the options of ``commands`` only (None: of every command)."""
    parser = argparse.ArgumentParser(
        prog="python -m hyre_engine",
        description="HyRe Studio engine: hypothesis reweighting for personalised reward models.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, cmd in COMMANDS.items():
        sub = subparsers.add_parser(name, help=cmd.help, description=cmd.description)
        if commands is None or name in commands:
            cmd.add_arguments(sub)
        sub.set_defaults(func=cmd.run)
    return parser


# Exit code of a command stopped by bad input (argparse uses the same for bad options).
EXIT_INPUT_ERROR = 2
# Exit code of a command stopped by Ctrl-C (128 + SIGINT), as a shell reports it.
EXIT_INTERRUPTED = 130


def input_error_types() -> tuple[type[BaseException], ...]:
    """What counts as bad input rather than a bug: printed as one line, never a traceback.

    ValueError covers DataError and every validation in the engine; OSError a file that
    cannot be read; the store's lock error a database another process holds; DuckDB's
    IOException a file that is not a database. The store's classes are looked up only
    if a command loaded the store, so ``--help`` stays light.
    """
    types: list[type[BaseException]] = [ValueError, OSError, RecursionError]
    for module in ("hyre_engine.store", "hyre_engine.store.connection"):
        store = sys.modules.get(module)
        if store is not None and hasattr(store, "StoreLockedError"):
            types.append(store.StoreLockedError)
    duckdb = sys.modules.get("duckdb")
    if duckdb is not None:
        types.append(duckdb.IOException)
    return tuple(types)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # The top level has no options of its own, so the first word is the command.
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser([command] if command in COMMANDS else [])
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        if not isinstance(exc, input_error_types()):
            raise
        print(f"error: {' '.join(str(exc).split()) or type(exc).__name__}", file=sys.stderr)
        return EXIT_INPUT_ERROR


if __name__ == "__main__":
    raise SystemExit(main())
