"""ONNX Runtime for a sentence-transformers backbone: local export, cache, inference.

sentence-transformers' own ``backend="onnx"`` and its quantisation helpers
(``export_dynamic_quantized_onnx_model``) go through optimum-onnx, whose only
release requires transformers < 4.58; this project pins transformers 5.x, so the
model is exported here instead: ``torch.onnx.export`` of the whole
sentence-transformers pipeline (transformer, pooling, normalisation) from the
installed weights, optionally followed by onnxruntime's dynamic int8
quantisation of the MatMul weights. Nothing is downloaded.

Exports are cached in a folder keyed by the SHA-256 of the source weights and the
variant, outside site-packages (``default_cache_dir()``, or a folder the caller
passes, e.g. next to the store). An export is written to a temporary folder and
renamed into place, so a crash or a concurrent export never leaves a half-written
model where a loader looks.

At run time only ``tokenizers``, ``onnxruntime`` and numpy are needed: loading a
cached export does not import sentence-transformers.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

# What each variant means; "onnx-int8" quantises only MatMul weights, per channel:
# quantising everything (the Gather of the word embeddings included) cost cosine
# 0.89 to the float32 vectors on the demo texts, MatMul-only per channel 0.986.
VARIANTS = ("onnx", "onnx-int8")
# Opset 17 has LayerNormalization as one op, which onnxruntime runs fused.
OPSET = 17
# Bumped when the export recipe changes, so old cached exports are not reused: it is
# in the export cache key (weights_hash) and, from 2 on, in the backbone id of the vectors.
# 2: traced with eager attention. transformers' default (SDPA) traces with extra
# Where / IsNaN masking ops per layer; the eager graph (matmul, softmax, matmul) gave
# the same vectors and ran int8 at 2.52x torch against 2.04x for the SDPA trace, in one
# run (bench/onnx_variants.py, docs/results.md).
EXPORT_VERSION = 2
# The attention implementation traced (see EXPORT_VERSION).
EXPORT_ATTENTION = "eager"
# Weight files whose bytes define the model (hashed whole into the cache key).
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".onnx")
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
# 1 MiB reads: hashing 90 MB of MiniLM weights takes ~0.2 s.
HASH_CHUNK = 1 << 20


def default_cache_dir() -> Path:
    """``$HYRE_CACHE_DIR/onnx``, else ``$XDG_CACHE_HOME/hyre-studio/onnx`` (``~/.cache/...``)."""
    root = os.environ.get("HYRE_CACHE_DIR")
    if root:
        return Path(root).expanduser() / "onnx"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "hyre-studio" / "onnx"


def weights_hash(model_dir: Path) -> str:
    """SHA-256 (16 hex) of every weight file's relative name and bytes in ``model_dir``."""
    files = sorted(
        p for p in Path(model_dir).rglob("*")
        if p.is_file() and p.suffix in WEIGHT_SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(model_dir).parts)
    )
    if not files:
        raise ValueError(f"no weight files ({', '.join(WEIGHT_SUFFIXES)}) in {str(model_dir)!r}")
    digest = hashlib.sha256(f"v{EXPORT_VERSION}".encode())
    for file in files:
        digest.update(file.relative_to(model_dir).as_posix().encode() + b"\0")
        with file.open("rb") as fh:
            while chunk := fh.read(HASH_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()[:16]


def export_dir(model_dir: Path, variant: str, cache_dir: Path | None = None) -> Path:
    """Where the export of ``model_dir`` as ``variant`` lives (whether or not it exists yet)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown ONNX variant {variant!r}: expected one of {', '.join(VARIANTS)}")
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return cache / f"{Path(model_dir).name}-{weights_hash(Path(model_dir))}-{variant}"


def ensure_export(model_dir: Path, variant: str = "onnx", *, cache_dir: Path | None = None) -> Path:
    """The cached export folder of a sentence-transformers ``model_dir``; exported on first use.

    The folder holds ``model.onnx``, ``tokenizer.json`` and ``meta.json`` (window,
    dimension, source). Export needs torch and sentence-transformers and takes
    ~10-20 s on two cores; later calls only hash the weights.
    """
    target = export_dir(model_dir, variant, cache_dir)
    if (target / "meta.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        _export(Path(model_dir), tmp, variant)
        try:
            os.replace(tmp, target)  # atomic; fails if another process got there first
        except OSError:
            if not (target / "meta.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _export(model_dir: Path, out: Path, variant: str, *, attention: str | None = EXPORT_ATTENTION) -> None:
    """Export ``model_dir`` into ``out``; ``attention`` is the transformers attention
    implementation traced ("eager", the default; "sdpa"; None: the model's default)."""
    import torch
    from sentence_transformers import SentenceTransformer

    kwargs = {} if attention is None else {"model_kwargs": {"attn_implementation": attention}}
    model = SentenceTransformer(str(model_dir), device="cpu", local_files_only=True, **kwargs).eval()
    window = int(model.max_seq_length)
    tokenizer = model.tokenizer

    class Pipeline(torch.nn.Module):
        def __init__(self, st):
            super().__init__()
            self.st = st

        def forward(self, input_ids, attention_mask, token_type_ids):
            features = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
            return self.st(features)["sentence_embedding"]

    # Two texts of different lengths: padding is part of the traced example.
    enc = tokenizer(["a short text", "a somewhat longer text to trace with padding"], padding=True,
                    truncation=True, max_length=window, return_tensors="pt")
    if "token_type_ids" not in enc:
        raise ValueError(f"{str(model_dir)!r}: the ONNX backend supports BERT-style models with token_type_ids")
    fp32 = out / "model-fp32.onnx"
    dynamic = {name: {0: "batch", 1: "sequence"} for name in INPUT_NAMES}
    dynamic["embedding"] = {0: "batch"}
    import warnings

    with torch.inference_mode(), warnings.catch_warnings():
        # The tracer warns about shape checks it freezes; the traced graph is checked
        # against torch on other batch and sequence sizes by the tests.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Pipeline(model).eval(), tuple(enc[name] for name in INPUT_NAMES), str(fp32),
            input_names=list(INPUT_NAMES), output_names=["embedding"], dynamic_axes=dynamic,
            opset_version=OPSET, dynamo=False,
        )
    final = out / "model.onnx"
    if variant == "onnx-int8":
        _quantize_int8(fp32, final)
        fp32.unlink()
    else:
        fp32.rename(final)
    tokenizer.backend_tokenizer.save(str(out / "tokenizer.json"))
    meta = {
        "source": str(model_dir), "variant": variant, "max_length": window,
        "dim": int(model.get_embedding_dimension()), "pad_id": int(tokenizer.pad_token_id),
        "pad_token": str(tokenizer.pad_token), "export_version": EXPORT_VERSION,
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=1))


def _quantize_int8(fp32: Path, final: Path) -> None:
    """Dynamic int8 quantisation of the MatMul weights, per channel."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # "consider pre-processing" advice, not a problem
    try:
        quantize_dynamic(str(fp32), str(final), weight_type=QuantType.QInt8,
                         op_types_to_quantize=["MatMul"], per_channel=True)
    finally:
        root.setLevel(level)


class OnnxEncoder:
    """An exported sentence-transformers pipeline: texts -> float32 embeddings (N, dim)."""

    def __init__(self, folder: Path, *, threads: int | None = None, max_length: int | None = None):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        folder = Path(folder)
        self.meta = json.loads((folder / "meta.json").read_text())
        self.max_length = int(max_length or self.meta["max_length"])
        self.dim = int(self.meta["dim"])
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"])
        # The encoder's own copy: truncation / padding state never leaks to callers.
        self._runner = Tokenizer.from_str(self.tokenizer.to_str())
        self._runner.enable_truncation(self.max_length)
        self._runner.enable_padding(pad_id=int(self.meta["pad_id"]), pad_token=self.meta["pad_token"])

    def encode(self, texts: list[str]) -> np.ndarray:
        """Embeddings (len(texts), dim) float32 of one batch, padded to its longest text."""
        if not texts:
            return np.empty((0, self.dim), dtype=np.float32)
        encodings = self._runner.encode_batch(texts, add_special_tokens=True)
        feeds: dict[str, Any] = {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
        }
        return np.asarray(self.session.run(None, feeds)[0], dtype=np.float32)
