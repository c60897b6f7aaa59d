"""A mean-pooling sentence-transformers model run on the bare transformers model.

Importing sentence-transformers costs 6-8 s on this project's 2-core CPU (it pulls in
scikit-learn and its training stack): most of a first launch's wait before the first
text is embedded. Most sentence-transformers folders, the embedded all-MiniLM-L6-v2
among them, are three modules that transformers alone can run: a Transformer (the
tokenizer and encoder, truncated at the module's window), mean pooling over the
attention mask, and optionally L2 normalisation. `MeanPoolEncoder` runs exactly those
with the same tokenizer and weights, so its vectors are SentenceTransformer.encode's
(tests/test_backbone.py compares them to 1e-6) and the embeddings cache keys stay the
same. `plain_mean_pooling_folder` says which folders qualify; anything else (another
pooling, Dense layers, prompts, lower-casing) loads through sentence-transformers.

It offers the part of SentenceTransformer's interface this project uses, so a backbone
and the joint fine-tuning drive either the same way: ``encode``, ``preprocess`` then a
call giving ``"sentence_embedding"`` (differentiable), ``tokenizer``, ``max_seq_length``,
``get_embedding_dimension`` and ``auto_model``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

# modules.json "type" of the three modules, by their last name: sentence-transformers
# has written them as sentence_transformers.models.X and under its newer module paths.
TRANSFORMER, POOLING, NORMALIZE = "Transformer", "Pooling", "Normalize"
# The Pooling config of a plain mean: every other mode off (a model may combine modes).
_OTHER_POOLING_MODES = ("pooling_mode_cls_token", "pooling_mode_max_tokens", "pooling_mode_mean_sqrt_len_tokens",
                        "pooling_mode_weightedmean_tokens", "pooling_mode_lasttoken")
# sentence_bert_config.json keys this runner implements (others change what is embedded).
_KNOWN_TRANSFORMER_KEYS = {"max_seq_length", "do_lower_case"}


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _module_kind(entry: dict) -> str | None:
    kind = str(entry.get("type", ""))
    return kind.rsplit(".", 1)[-1] if kind.startswith("sentence_transformers.") else None


def plain_mean_pooling_folder(path: Path) -> bool:
    """Whether ``path`` (a sentence-transformers folder) is Transformer -> mean pooling
    [-> Normalize] with nothing this runner would have to imitate (prompts, lower-casing,
    other pooling modes or settings)."""
    modules = _read_json(path / "modules.json")
    if not isinstance(modules, list) or not 2 <= len(modules) <= 3:
        return False
    kinds = [_module_kind(m) if isinstance(m, dict) else None for m in modules]
    if kinds[:2] != [TRANSFORMER, POOLING] or kinds[2:] not in ([], [NORMALIZE]) or modules[0].get("path", ""):
        return False
    settings = _read_json(path / "sentence_bert_config.json") or {}
    if set(settings) - _KNOWN_TRANSFORMER_KEYS or settings.get("do_lower_case"):
        return False
    pooling = _read_json(path / str(modules[1].get("path", "")) / "config.json")
    if not isinstance(pooling, dict) or not pooling.get("pooling_mode_mean_tokens"):
        return False
    if any(pooling.get(mode) for mode in _OTHER_POOLING_MODES) or pooling.get("include_prompt") is False:
        return False
    st_config = _read_json(path / "config_sentence_transformers.json") or {}
    return not st_config.get("prompts") and not st_config.get("default_prompt_name")


class MeanPoolEncoder(torch.nn.Module):
    """Texts -> the attention-masked mean of the encoder's last hidden state [, L2-normalised]."""

    def __init__(self, model: Any, tokenizer: Any, *, max_seq_length: int, normalize: bool) -> None:
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.max_seq_length = int(max_seq_length)
        self.normalize = normalize

    @classmethod
    def load(cls, path: Path) -> MeanPoolEncoder:
        """The folder's model on the CPU (eval mode); ``plain_mean_pooling_folder(path)`` must hold."""
        from transformers import AutoModel, AutoTokenizer

        modules = _read_json(path / "modules.json")
        settings = _read_json(path / "sentence_bert_config.json") or {}
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        model = AutoModel.from_pretrained(str(path), local_files_only=True, use_safetensors=True)
        window = settings.get("max_seq_length") or min(tokenizer.model_max_length,
                                                        model.config.max_position_embeddings)
        return cls(model.eval(), tokenizer, max_seq_length=window,
                   normalize=_module_kind(modules[-1]) == NORMALIZE).eval()

    @property
    def auto_model(self) -> Any:
        """The transformers module holding the weights (what fine-tuning trains)."""
        return self.model

    def get_embedding_dimension(self) -> int:
        return int(self.model.config.hidden_size)

    def preprocess(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Tokenized ``texts``, padded to the longest and cut at the window (as the Transformer module)."""
        return dict(self.tokenizer(list(texts), padding=True, truncation="longest_first",
                                   max_length=self.max_seq_length, return_tensors="pt"))

    def forward(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``{"sentence_embedding": (batch, dim)}`` of tokenized texts; differentiable."""
        mask = features["attention_mask"]
        hidden = self.model(**features).last_hidden_state  # (batch, seq, dim)
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
        if self.normalize:
            pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
        return {"sentence_embedding": pooled}

    @torch.inference_mode()
    def encode(self, texts: Sequence[str], *, batch_size: int = 32, convert_to_numpy: bool = True,
               convert_to_tensor: bool = False, show_progress_bar: bool = False) -> np.ndarray | torch.Tensor:
        """Embeddings of ``texts`` in their order, batched longest first as encode() does
        (less padding); a tensor with ``convert_to_tensor``, else float numpy."""
        del show_progress_bar  # the callers draw their own progress
        texts = list(texts)
        device = next(self.model.parameters()).device
        dim = self.get_embedding_dimension()
        order = np.argsort([-len(t) for t in texts], kind="stable")
        parts = []
        for start in range(0, len(texts), batch_size):
            features = self.preprocess([texts[i] for i in order[start:start + batch_size]])
            parts.append(self({k: v.to(device) for k, v in features.items()})["sentence_embedding"])
        out = torch.empty((len(texts), dim), dtype=parts[0].dtype if parts else torch.float32, device=device)
        if parts:
            out[torch.from_numpy(order).to(device)] = torch.cat(parts)
        return out if convert_to_tensor or not convert_to_numpy else out.float().cpu().numpy()
