"""The demo texts' embeddings, shipped with the demo pool so a first launch need not compute them.

Embedding the demo's 324 texts with the embedded MiniLM takes about 15 s on a 2-core CPU
(~22 texts/s at their ~140 tokens), more than all the rest of a first launch together.
The texts and the model are both fixed and shipped, so the vectors are too: this file holds
them, written by ``python -m hyre_engine demo-data --embeddings`` with the installed model,
and keyed exactly like the store's embeddings cache (the backbone id, the text hashes).

Nothing is trusted blindly. The file is safetensors (no pickle), its metadata names the
backbone id that wrote it and the text hash of every row, and ``seed`` uses it only when
that id is the one the installed default model has (`backbone.default_backbone_id`: the
model folder's fingerprint, window and text template), so a different model, template or
window embeds the texts itself as before. tests/test_demo_embeddings.py re-embeds a sample
with the real model and compares. A malformed file raises ValueError naming the problem;
the first launch then logs it and embeds the texts itself.

``HYRE_DEMO_EMBEDDINGS=0`` turns the shipped vectors off (to measure or test the full build).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

import numpy as np

from hyre_engine.demo import DEMO_DIR

EMBEDDINGS_FILE = DEMO_DIR / "embeddings.safetensors"
FORMAT = "hyre-demo-embeddings"
VERSION = "1"
ENV = "HYRE_DEMO_EMBEDDINGS"
# How far a shipped vector may be from the model's own (float32 on another CPU differs ~1e-7).
CHECK_TOLERANCE = 1e-5
_HASH = re.compile(r"[0-9a-f]{64}")


def enabled() -> bool:
    """Whether the shipped vectors may be used (``HYRE_DEMO_EMBEDDINGS`` is not "0")."""
    return os.environ.get(ENV, "1").strip() != "0"


def write(store, pool_id: str, backbone, path: str | os.PathLike = EMBEDDINGS_FILE, *, progress=None) -> int:
    """Embed the pool's texts with ``backbone`` and write them to ``path`` (atomically): rows."""
    from safetensors.numpy import save_file

    texts = store.pool_texts(pool_id)
    vectors = backbone.embed(texts["prompt"].tolist(), texts["response"].tolist(), progress=progress)
    metadata = {"format": FORMAT, "version": VERSION, "backbone_id": backbone.id,
                "text_hashes": json.dumps(texts["text_hash"].tolist())}
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file({"vectors": np.ascontiguousarray(vectors, dtype=np.float32)}, tmp, metadata=metadata)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would keep a shipped data file from other users
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return len(texts)


def read(path: str | os.PathLike = EMBEDDINGS_FILE) -> tuple[str, list[str], np.ndarray]:
    """(backbone id, text hashes, vectors (n, dim) float32) of a shipped embeddings file.

    ValueError naming the problem for anything but a well-formed file of this format.
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="numpy") as f:
            metadata = f.metadata() or {}
            names = list(f.keys())
            if names != ["vectors"]:
                raise ValueError(f"{path.name}: expected one tensor 'vectors', found {names}")
            vectors = f.get_tensor("vectors")
    except SafetensorError as exc:
        raise ValueError(f"{path.name} is not a readable safetensors file: {exc}") from None
    if metadata.get("format") != FORMAT or metadata.get("version") != VERSION:
        raise ValueError(f"{path.name}: format {metadata.get('format')!r} version {metadata.get('version')!r}, "
                         f"expected {FORMAT!r} version {VERSION!r}")
    backbone_id = metadata.get("backbone_id")
    if not isinstance(backbone_id, str) or not backbone_id:
        raise ValueError(f"{path.name}: no backbone_id in its metadata")
    try:
        hashes = json.loads(metadata.get("text_hashes", ""))
    except json.JSONDecodeError:
        raise ValueError(f"{path.name}: text_hashes is not a JSON list") from None
    if not isinstance(hashes, list) or not all(isinstance(h, str) and _HASH.fullmatch(h) for h in hashes):
        raise ValueError(f"{path.name}: text_hashes must be a list of sha256 hex strings")
    if len(set(hashes)) != len(hashes):
        raise ValueError(f"{path.name}: text_hashes repeats a hash")
    if vectors.dtype != np.float32 or vectors.ndim != 2 or vectors.shape[0] != len(hashes):
        raise ValueError(f"{path.name}: vectors are {vectors.dtype} {vectors.shape}, expected float32 "
                         f"({len(hashes)}, dim) for its {len(hashes)} text hashes")
    if not np.isfinite(vectors).all():
        raise ValueError(f"{path.name}: vectors hold NaN or infinite values")
    return backbone_id, hashes, vectors


def seed(store, pool_id: str, backbone_id: str, path: str | os.PathLike | None = None) -> int:
    """Put the shipped vectors (``path``, default EMBEDDINGS_FILE) of the pool's texts that
    ``backbone_id`` has not embedded yet into the store: how many. 0 when the file is absent,
    turned off, or from another backbone."""
    path = Path(EMBEDDINGS_FILE if path is None else path)
    if not enabled() or not path.is_file():
        return 0
    shipped_id, hashes, vectors = read(path)
    if shipped_id != backbone_id:
        return 0
    row = {h: i for i, h in enumerate(hashes)}
    missing = [h for h in store.missing_embeddings(backbone_id, store.pool_texts(pool_id)["text_hash"].tolist())
               if h in row]
    if missing:
        store.put_embeddings(backbone_id, missing, vectors[[row[h] for h in missing]])
    return len(missing)
