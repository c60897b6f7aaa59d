"""ONNX Runtime recipes for the embedded MiniLM: throughput against torch and cosine, one run.

    nice .venv/bin/python bench/onnx_variants.py [--variants all] [--repeats 2] [--texts N] [--threads 2]

Issue 14 asks for >= 2x torch's texts/s at a worst cosine >= 0.99 to torch's float32
vectors on the demo texts. `onnx_backend` ships two recipes (float32, and int8 of every
weight MatMul, per channel); this script builds the others tried, from the same cached
float32 export (`onnx_backend.ensure_export`), in a scratch folder:

- ``fused``: onnxruntime's transformer optimiser (one Attention op per layer with a
  packed QKV MatMul, SkipLayerNormalization, BiasGelu), then ORT's own optimisation
  level as every session uses;
- ``int8*``: dynamic quantisation of the weight MatMuls (activation x activation
  MatMuls are never quantised in dynamic mode), with the options in the name:
  ``u8u8`` (unsigned weights: AVX2 without VNNI multiplies u8 x s8 with VPMADDUBSW,
  whose int16 sums can saturate; u8 x u8 does not), ``rr`` (reduce_range, 7-bit
  weights, the other cure for that saturation), ``pt`` (per tensor instead of per
  channel), ``-ffn2`` / ``-last`` (the FFN output MatMuls / the last layer left float32);
- on the fused graph the same, with the Attention op quantised too;
- ``eager-<any of these>``: the same recipe on a graph traced with transformers' eager
  attention instead of its default (SDPA, traced with extra Where / IsNaN masking ops).

Every variant embeds the same texts (demo texts, longest first, the backbone's batch
size) with the same thread count, alternating with torch each repeat so that other jobs
load them alike. Prints texts/s, the ratio to torch in the same run, and the min / mean
cosine to torch. Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

# MiniLM-L6: 12 heads over 384 dimensions, 6 layers (what the optimiser's fusions need).
NUM_HEADS, HIDDEN, N_LAYERS = 12, 384, 6

# name -> (fused graph first?, quantisation options or None)
VARIANTS: dict[str, tuple[bool, dict | None]] = {
    "fp32": (False, None),
    "fused": (True, None),
    "int8": (False, {}),
    "int8-rr": (False, {"reduce_range": True}),
    "int8-u8u8": (False, {"weight_type": "QUInt8"}),
    "int8-pt": (False, {"per_channel": False}),
    "int8-ffn2": (False, {"exclude": (r"layer\.\d+/output/dense",)}),
    "int8-last": (False, {"exclude": (rf"layer\.{N_LAYERS - 1}/",)}),
    "int8-first-last": (False, {"exclude": (r"layer\.0/", rf"layer\.{N_LAYERS - 1}/")}),
    "fused-int8": (True, {}),
    "fused-int8-u8u8": (True, {"weight_type": "QUInt8"}),
    "fused-int8-rr": (True, {"reduce_range": True}),
    "fused-int8-noattn": (True, {"op_types": ["MatMul"]}),
}


def build_variant(fp32_dir: Path, name: str, out_root: Path) -> Path:
    """A folder like an export (model.onnx, tokenizer.json, meta.json) holding variant ``name``;
    ``eager-<recipe>`` starts from a float32 export traced with eager attention."""
    if name.startswith("eager-"):
        fp32_dir = eager_export(out_root)
    fused, quant = VARIANTS[name.removeprefix("eager-")]
    folder = out_root / name
    if (folder / "model.onnx").is_file():
        return folder
    tmp = out_root / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for file in ("tokenizer.json", "meta.json"):
        shutil.copy(fp32_dir / file, tmp / file)
    source = fp32_dir / "model.onnx"
    if fused:
        from onnxruntime.transformers import optimizer

        model = optimizer.optimize_model(str(source), model_type="bert", num_heads=NUM_HEADS,
                                         hidden_size=HIDDEN, opt_level=0)
        print(f"  {name}: fused ops {model.get_fused_operator_statistics()}", flush=True)
        model.save_model_to_file(str(tmp / "fused.onnx"))
        source = tmp / "fused.onnx"
    if quant is None:
        shutil.copy(source, tmp / "model.onnx")
    else:
        import logging

        import onnx
        from onnxruntime.quantization import QuantType, quantize_dynamic

        graph = onnx.load(str(source)).graph
        patterns = quant.get("exclude", ())
        exclude = [node.name for node in graph.node if any(re.search(p, node.name) for p in patterns)]
        op_types = quant.get("op_types", ["MatMul", "Attention"] if fused else ["MatMul"])
        logging.getLogger().setLevel(logging.ERROR)
        quantize_dynamic(str(source), str(tmp / "model.onnx"), op_types_to_quantize=op_types,
                         per_channel=quant.get("per_channel", True), reduce_range=quant.get("reduce_range", False),
                         weight_type=getattr(QuantType, quant.get("weight_type", "QInt8")),
                         nodes_to_exclude=exclude,
                         # contrib ops (Attention, SkipLayerNormalization) defeat shape inference
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
        if exclude:
            print(f"  {name}: {len(exclude)} nodes left float32", flush=True)
    (tmp / "fused.onnx").unlink(missing_ok=True)
    meta = json.loads((tmp / "meta.json").read_text())
    meta["variant"] = name
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
    os.replace(tmp, folder)
    return folder


def eager_export(out_root: Path) -> Path:
    """The float32 export traced with eager attention (matmul, softmax, matmul), made once."""
    from hyre_engine.backbone import default_model_path
    from hyre_engine.onnx_backend import _export

    folder = out_root / "eager-export"
    if not (folder / "meta.json").is_file():
        tmp = out_root / ".eager-export.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        _export(default_model_path(), tmp, "onnx", attention="eager")
        os.replace(tmp, folder)
    return folder


# Groups of weight MatMuls (eager export's node names) for --sensitivity.
GROUPS = {
    **{kind: rf"attention/self/{kind}/MatMul" for kind in ("query", "key", "value")},
    "attention-out": r"attention/output/dense/MatMul",
    "ffn-in": r"intermediate/dense/MatMul",
    "ffn-out": r"layer\.\d+/output/dense/MatMul",
    **{f"layer.{i}": rf"layer\.{i}/" for i in range(N_LAYERS)},
}


def sensitivity(out_root: Path, texts: list[str], reference: np.ndarray, threads: int, weight_type: str) -> None:
    """Worst / mean cosine to torch with int8 everywhere but one group left float32 (unfused eager graph)."""
    from hyre_engine.onnx_backend import OnnxEncoder

    def cosines(folder: Path) -> np.ndarray:
        encoder = OnnxEncoder(folder, threads=threads)
        v = np.concatenate([encoder.encode(texts[i:i + 16]) for i in range(0, len(texts), 16)])
        return (v * reference).sum(1) / np.linalg.norm(v, axis=1) / np.linalg.norm(reference, axis=1)

    print(f"sensitivity ({weight_type} weights, {len(texts)} texts): cosine with one group left float32")
    for group, pattern in {"(none)": None, **GROUPS}.items():
        name = f"sens-{weight_type}-{group}"
        VARIANTS[name] = (False, {"weight_type": weight_type, "exclude": (pattern,) if pattern else ()})
        cos = cosines(build_variant(eager_export(out_root), "eager-" + name, out_root))
        print(f"  {group:<14} min {cos.min():.4f}  mean {cos.mean():.5f}", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default="all", help=f"comma list of {', '.join(VARIANTS)}, or all")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--texts", type=int, default=None, help="only this many of the demo texts (every k-th)")
    parser.add_argument("--batch-size", type=int, default=None, help="the backbone's default if not given")
    parser.add_argument("--cache-dir", default="/tmp/hyre-onnx-variants", help="exports and variants")
    parser.add_argument("--sensitivity", choices=("QInt8", "QUInt8"), default=None,
                        help="instead of timing: which weight MatMuls cost the cosine (one group float32 at a time)")
    args = parser.parse_args(argv)
    names = list(VARIANTS) if args.variants == "all" else args.variants.split(",")
    unknown = [n for n in names if n.removeprefix("eager-") not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}")

    import torch

    torch.set_num_threads(args.threads)
    from bench.bench_embedding import demo_texts
    from hyre_engine.backbone import DEFAULT_BATCH_SIZE, Backbone, default_model_path, load_backbone
    from hyre_engine.onnx_backend import OnnxEncoder, ensure_export

    batch = args.batch_size or DEFAULT_BATCH_SIZE
    cache = Path(args.cache_dir)
    reference = load_backbone(device="cpu", backend="torch", batch_size=batch)
    start = time.perf_counter()
    fp32_dir = ensure_export(default_model_path(), "onnx", cache_dir=cache / "exports")
    print(f"float32 export: {time.perf_counter() - start:.1f} s (0 when cached)", flush=True)
    encoders = {}
    for name in names:
        start = time.perf_counter()
        folder = build_variant(fp32_dir, name, cache / "variants")
        encoder = OnnxEncoder(folder, threads=args.threads)
        encoders[name] = Backbone(
            name=reference.name, path=reference.path, kind="sentence-transformers", model=encoder,
            tokenizer=encoder.tokenizer, device=torch.device("cpu"), max_length=encoder.max_length,
            dim=encoder.dim, batch_size=batch, pooling="model", revision=reference.revision, backend="onnx",
        )
        print(f"  {name}: built and loaded in {time.perf_counter() - start:.1f} s, "
              f"{(folder / 'model.onnx').stat().st_size / 1e6:.0f} MB", flush=True)
    texts = demo_texts(reference)
    if args.texts:
        texts = texts[:: max(1, len(texts) // args.texts)][: args.texts]
    if args.sensitivity:
        sensitivity(cache / "variants", texts, reference.embed_texts(texts), args.threads, args.sensitivity)
        return 0
    load0 = os.getloadavg()[0]
    print(f"{len(texts)} texts, batch {batch}, {args.threads} threads, load average {load0:.1f}", flush=True)
    times: dict[str, list[float]] = {"torch": [], **{n: [] for n in names}}
    vectors = {}
    models = {"torch": reference, **encoders}
    for _ in range(args.repeats):
        for name, model in models.items():
            start = time.perf_counter()
            vectors[name] = model.embed_texts(texts)
            times[name].append(time.perf_counter() - start)
    ref = vectors["torch"]
    base = len(texts) / statistics.median(times["torch"])
    print(f"{'variant':<20} {'texts/s':>8} {'x torch':>8} {'min cos':>8} {'mean cos':>9}  target: >= 2x at min cos >= 0.99")
    for name in models:
        rate = len(texts) / statistics.median(times[name])
        v = vectors[name]
        cos = (v * ref).sum(1) / np.linalg.norm(v, axis=1) / np.linalg.norm(ref, axis=1)
        meets = rate / base >= 2.0 and cos.min() >= 0.99
        print(f"{name:<20} {rate:8.1f} {rate / base:8.2f} {cos.min():8.4f} {cos.mean():9.4f}"
              f"{'  MEETS' if meets and name != 'torch' else ''}", flush=True)
    print(f"load average before / after: {load0:.1f} / {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
