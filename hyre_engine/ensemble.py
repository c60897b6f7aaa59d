"""Torch ensembles of reward heads: configuration, model kinds, masks, prediction, storage.

Three kinds, all mapping a batch of inputs ``x`` of shape ``(B, D)`` to ``(B, K)``
outputs (one reward / logit / value per head):

- ``"shared"``: an optional shared trunk, then K heads; head k is a learnable MLP
  plus ``prior_scale`` times a frozen random prior MLP (Osband et al. 2018). The
  heads are evaluated together with batched einsums.
- ``"epinet"``: one learnable base network plus a small epinet fed an epistemic
  index z (Osband et al. 2023); K fixed indices z_k make the K heads.
- ``"vanilla"``: K independent MLPs without priors, batched the same way.

Weights are stored with safetensors (never pickle) and the configuration as JSON.
Training them is ``hyre_engine.training``.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from hyre_engine.device import pick_device
from hyre_engine.settings import DictSettings

# K = 100 heads and one hidden layer of 128 units per head: the paper's setup.
DEFAULT_HEADS = 100
DEFAULT_HIDDEN = 128
# Inputs are standardised before the heads and prior MLPs are initialised to give
# unit-variance outputs on the data, so the prior's reward margins are O(1), the scale
# of a Bradley-Terry logit: the heads still fit the data easily and disagree off it
# (Osband et al. 2018 use prior scales of 1-3 for O(1) inputs and targets).
DEFAULT_PRIOR_SCALE = 1.0
# Dimension of the epistemic index z: Osband et al.'s epinet uses 8-30; 10 sits low in that
# range, enough distinct heads for K = 100 while the epinet stays small.
DEFAULT_INDEX_DIM = 10
# Width of the optional shared trunk: the paper's UCI setup (two layers of 50 units).
DEFAULT_TRUNK_HIDDEN = 50

KINDS = ("shared", "epinet", "vanilla")
TASKS = ("preference", "classification", "regression")



# --------------------------------------------------------------------------- config


@dataclass
class EnsembleConfig(DictSettings):
    """Everything needed to rebuild an ensemble (weights aside); JSON-safe.

    ``trunk_layers`` shared learnable layers (width ``trunk_hidden``) come before the
    heads: 0 for embeddings, whose backbone is already the shared base.
    ``n_layers`` is the number of hidden layers of each head / member / epinet base.
    ``mask_groups`` names the columns of the head x group mask (annotator-aware heads).
    ``standardize``: the first ``fit_ensemble`` stores the training inputs' mean and
    std in the model and standardises every input with them.
    """

    kind: str = "shared"
    input_dim: int = 384
    n_heads: int = DEFAULT_HEADS
    hidden: int = DEFAULT_HIDDEN
    prior_scale: float = DEFAULT_PRIOR_SCALE
    index_dim: int = DEFAULT_INDEX_DIM
    trunk_layers: int = 0
    trunk_hidden: int = DEFAULT_TRUNK_HIDDEN
    n_layers: int = 1
    seed: int = 0
    mask_groups: list[str] | None = None
    standardize: bool = True

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown ensemble kind {self.kind!r}; valid kinds: {list(KINDS)}")
        for name in ("input_dim", "n_heads", "hidden", "index_dim", "trunk_hidden", "n_layers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if isinstance(self.trunk_layers, bool) or not isinstance(self.trunk_layers, int):
            raise ValueError(f"trunk_layers must be an integer, got {self.trunk_layers!r}")
        if self.trunk_layers < 0:
            raise ValueError(f"trunk_layers must be >= 0, got {self.trunk_layers}")
        self.prior_scale = float(self.prior_scale)
        if not math.isfinite(self.prior_scale) or self.prior_scale < 0:
            raise ValueError(f"prior_scale must be finite and >= 0, got {self.prior_scale}")
        self.seed = int(self.seed)
        if self.mask_groups is not None:
            groups = [str(g) for g in self.mask_groups]
            if not groups:
                raise ValueError("mask_groups must be None or a non-empty list of names")
            if len(set(groups)) != len(groups):
                raise ValueError("mask_groups must not repeat a name")
            self.mask_groups = groups

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


# --------------------------------------------------------------------------- building blocks


def _uniform(shape: Sequence[int], bound: float, gen: torch.Generator) -> torch.Tensor:
    return (torch.rand(*shape, generator=gen) * 2 - 1) * bound


def _learnable_init(shape: Sequence[int], fan_in: int, gen: torch.Generator) -> torch.Tensor:
    # torch.nn.Linear's default scale, drawn from our own generator (seeded, global RNG untouched).
    return _uniform(shape, 1.0 / math.sqrt(fan_in), gen)


class _BatchedMLP(nn.Module):
    """K MLPs of the same shape evaluated together: (B, D) -> (B, K).

    Layer weights are (K, fan_in, H) and biases (K, H), applied with one einsum per layer.
    A frozen MLP (``learnable=False``) keeps its tensors as buffers, initialised so
    that its outputs have about unit variance on standardised inputs: weights
    N(0, 1/fan_in), hidden biases N(0, 1) so that the ReLU kinks sit at different
    places for different heads.
    """

    def __init__(
        self,
        n_nets: int,
        in_dim: int,
        hidden: int,
        n_layers: int,
        *,
        learnable: bool,
        gen: torch.Generator,
    ) -> None:
        super().__init__()
        self.n_layers = n_layers
        self.learnable = learnable
        dims = [in_dim] + [hidden] * n_layers
        for i in range(n_layers):
            shape_w, shape_b = (n_nets, dims[i], dims[i + 1]), (n_nets, dims[i + 1])
            if learnable:
                w = _learnable_init(shape_w, dims[i], gen)
                b = _learnable_init(shape_b, dims[i], gen)
            else:
                w = torch.randn(*shape_w, generator=gen) / math.sqrt(dims[i])
                b = torch.randn(*shape_b, generator=gen)
            self._add(f"w{i}", w)
            self._add(f"b{i}", b)
        if learnable:
            w_out = _learnable_init((n_nets, hidden), hidden, gen)
            b_out = _learnable_init((n_nets,), hidden, gen)
        else:
            # A constant offset carries no information about preferences: zero it.
            w_out = torch.randn(n_nets, hidden, generator=gen) / math.sqrt(hidden)
            b_out = torch.zeros(n_nets)
        self._add("w_out", w_out)
        self._add("b_out", b_out)

    def _add(self, name: str, tensor: torch.Tensor) -> None:
        if self.learnable:
            self.register_parameter(name, nn.Parameter(tensor))
        else:
            self.register_buffer(name, tensor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Hidden states are (K, B, H): each layer is one batched matmul over the K nets that
        # reads the (K, fan_in, H) weights in place (einsum's "bd,kdh->bkh" copied them), and
        # the same code runs under torch.func.vmap (training.finetune_heads_batched).
        h = torch.relu(torch.matmul(x.unsqueeze(-3), self.w0) + self.b0.unsqueeze(-2))
        for i in range(1, self.n_layers):
            w, b = getattr(self, f"w{i}"), getattr(self, f"b{i}")
            h = torch.relu(torch.matmul(h, w) + b.unsqueeze(-2))
        out = torch.matmul(h, self.w_out.unsqueeze(-1)).squeeze(-1) + self.b_out.unsqueeze(-1)
        return out.transpose(-1, -2)

    def forward_rows(self, x: torch.Tensor) -> torch.Tensor:
        """Each net on its own rows: x (K, B, fan_in) -> (K, B), net k reading x[k] only."""
        h = x
        for i in range(self.n_layers):
            w, b = getattr(self, f"w{i}"), getattr(self, f"b{i}")
            h = torch.relu(torch.matmul(h, w) + b.unsqueeze(-2))
        return torch.matmul(h, self.w_out.unsqueeze(-1)).squeeze(-1) + self.b_out.unsqueeze(-1)


class _MLP(nn.Module):
    """One learnable MLP, (B, D) -> (B, H) hidden features (ReLU after every layer)."""

    def __init__(self, in_dim: int, hidden: int, n_layers: int, *, gen: torch.Generator) -> None:
        super().__init__()
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        dims = [in_dim] + [hidden] * n_layers
        for i in range(n_layers):
            self.weights.append(nn.Parameter(_learnable_init((dims[i], dims[i + 1]), dims[i], gen)))
            self.biases.append(nn.Parameter(_learnable_init((dims[i + 1],), dims[i], gen)))
        self.out_dim = dims[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for w, b in zip(self.weights, self.biases, strict=True):
            x = torch.relu(x @ w + b)
        return x


class Ensemble(nn.Module):
    """Shared plumbing: config, input standardisation, optional head x group mask."""

    def __init__(self, config: EnsembleConfig, gen: torch.Generator) -> None:
        super().__init__()
        self.config = config
        d = config.input_dim
        self.register_buffer("input_mean", torch.zeros(d))
        self.register_buffer("input_std", torch.ones(d))
        # 1 once fit_ensemble stored the training inputs' statistics (kept on refits).
        self.register_buffer("input_fitted", torch.zeros(1, dtype=torch.uint8))
        if config.mask_groups is not None:
            self.register_buffer(
                "head_mask", torch.ones(config.n_heads, len(config.mask_groups), dtype=torch.bool)
            )
        else:
            self.head_mask = None
        if config.trunk_layers > 0:
            self.trunk: _MLP | None = _MLP(d, config.trunk_hidden, config.trunk_layers, gen=gen)
            self.feature_dim = config.trunk_hidden
        else:
            self.trunk = None
            self.feature_dim = d

    @property
    def n_heads(self) -> int:
        return self.config.n_heads

    def _prepare(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Standardised input and trunk features."""
        x = (x - self.input_mean) / self.input_std
        return x, (self.trunk(x) if self.trunk is not None else x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class SharedBaseEnsemble(Ensemble):
    """(trunk) -> K heads, head k = learnable MLP_k + prior_scale * frozen prior MLP_k.

    The prior MLPs read the standardised input itself (not the learnable trunk), so a
    prior is a fixed function of x that training cannot reshape.
    """

    def __init__(self, config: EnsembleConfig, gen: torch.Generator) -> None:
        super().__init__(config, gen)
        k, h, n = config.n_heads, config.hidden, config.n_layers
        self.heads = _BatchedMLP(k, self.feature_dim, h, n, learnable=True, gen=gen)
        self.prior = _BatchedMLP(k, config.input_dim, h, n, learnable=False, gen=gen)

    def forward(self, x: torch.Tensor, prior_out: torch.Tensor | None = None) -> torch.Tensor:
        """(B, D) -> (B, K); ``prior_out`` (B, K) from ``prior_outputs`` skips the prior pass."""
        x, feats = self._prepare(x)
        out = self.heads(feats)
        if self.config.prior_scale != 0.0:
            out = out + self.config.prior_scale * (
                self.prior(x) if prior_out is None else prior_out
            )
        return out

    def learnable_rows(self, x: torch.Tensor) -> torch.Tensor:
        """Head k's learnable part on its own rows x[k]: (K, B, D) -> (K, B); no trunk, no
        prior (training adds the cached prior outputs)."""
        return self.heads.forward_rows((x - self.input_mean) / self.input_std)

    @torch.no_grad()
    def prior_outputs(self, x: torch.Tensor) -> torch.Tensor:
        """The frozen priors' outputs (B, K) (unscaled): fixed, so training caches them."""
        return self.prior((x - self.input_mean) / self.input_std)


class VanillaEnsemble(Ensemble):
    """K independent learnable MLPs, no priors, batched."""

    def __init__(self, config: EnsembleConfig, gen: torch.Generator) -> None:
        super().__init__(config, gen)
        self.members = _BatchedMLP(
            config.n_heads,
            self.feature_dim,
            config.hidden,
            config.n_layers,
            learnable=True,
            gen=gen,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.members(self._prepare(x)[1])

    def learnable_rows(self, x: torch.Tensor) -> torch.Tensor:
        """Member k on its own rows x[k]: (K, B, D) -> (K, B) (no trunk)."""
        return self.members.forward_rows((x - self.input_mean) / self.input_std)


class EpinetEnsemble(Ensemble):
    """f(z, x) = base(x) + v * prior(phi(x)) . z + epinet([phi(x), z]) . z  (Osband et al.).

    phi(x) is the base's last hidden layer, detached for the epinet terms so the
    epinet cannot reshape the base's features. The K heads are K fixed indices
    z_k ~ N(0, I) drawn from the seed (buffer ``indices``, (K, index_dim)).

    Training uses those same K indices rather than fresh z each step: HyRe reweights
    a fixed, finite set of hypotheses, so training exactly the functions used at
    inference is what matters; it also makes the loss, and the head x group mask,
    the same as for the other kinds.
    """

    def __init__(self, config: EnsembleConfig, gen: torch.Generator) -> None:
        super().__init__(config, gen)
        h, i = config.hidden, config.index_dim
        self.base = _MLP(self.feature_dim, h, config.n_layers, gen=gen)
        self.base_out_w = nn.Parameter(_learnable_init((h,), h, gen))
        self.base_out_b = nn.Parameter(_learnable_init((1,), h, gen))
        # frozen prior: phi (h) -> h -> index_dim
        self.register_buffer("prior_w0", torch.randn(h, h, generator=gen) / math.sqrt(h))
        self.register_buffer("prior_b0", torch.randn(h, generator=gen))
        self.register_buffer("prior_w1", torch.randn(h, i, generator=gen) / math.sqrt(h))
        # learnable epinet: [phi, z] (h + i) -> h -> index_dim; first layer split by input
        fan_in = h + i
        self.epi_wf = nn.Parameter(_learnable_init((h, h), fan_in, gen))
        self.epi_wz = nn.Parameter(_learnable_init((i, h), fan_in, gen))
        self.epi_b0 = nn.Parameter(_learnable_init((h,), fan_in, gen))
        self.epi_w1 = nn.Parameter(_learnable_init((h, i), h, gen))
        self.epi_b1 = nn.Parameter(_learnable_init((i,), h, gen))
        self.register_buffer("indices", torch.randn(config.n_heads, i, generator=gen))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, feats = self._prepare(x)
        phi = self.base(feats)  # (B, H)
        base = phi @ self.base_out_w + self.base_out_b  # (B,)
        phi_d = phi.detach()
        z = self.indices  # (K, I)
        out = base[:, None]
        if self.config.prior_scale != 0.0:
            prior = torch.relu(phi_d @ self.prior_w0 + self.prior_b0) @ self.prior_w1  # (B, I)
            out = out + self.config.prior_scale * (prior @ z.T)
        hidden = torch.relu(
            (phi_d @ self.epi_wf)[:, None, :] + (z @ self.epi_wz)[None] + self.epi_b0
        )
        epi = torch.einsum("bkh,hi->bki", hidden, self.epi_w1) + self.epi_b1  # (B, K, I)
        return out + (epi * z[None]).sum(-1)


_KIND_CLASSES = {"shared": SharedBaseEnsemble, "epinet": EpinetEnsemble, "vanilla": VanillaEnsemble}


def build_ensemble(config: EnsembleConfig, *, head_mask: np.ndarray | None = None) -> Ensemble:
    """A freshly initialised ensemble; the same config (seed included) gives the same weights.

    With ``config.mask_groups`` the model carries a ``head_mask`` buffer (n_heads, n_groups):
    ``head_mask`` when given, else all True (every head trains on every group).
    """
    if not isinstance(config, EnsembleConfig):
        raise ValueError(f"config must be an EnsembleConfig, got {type(config).__name__}")
    gen = torch.Generator().manual_seed(config.seed)
    model = _KIND_CLASSES[config.kind](config, gen)
    if head_mask is not None:
        set_head_mask(model, head_mask)
    return model


# --------------------------------------------------------------------------- head x group mask


def make_head_mask(n_heads: int, n_groups: int, *, fraction: float, seed: int) -> np.ndarray:
    """Random head x group mask, bool (n_heads, n_groups).

    Each head gets ``max(1, round(fraction * n_groups))`` groups at random; when
    ``n_heads * that >= n_groups`` every group is given to at least one head (groups
    left out are swapped in for a group that another head also covers).
    """
    if n_heads < 1 or n_groups < 1:
        raise ValueError(f"need n_heads >= 1 and n_groups >= 1, got {n_heads}, {n_groups}")
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    rng = np.random.default_rng(seed)
    per_head = max(1, round(fraction * n_groups))
    mask = np.zeros((n_heads, n_groups), dtype=bool)
    for k in range(n_heads):
        mask[k, rng.choice(n_groups, size=per_head, replace=False)] = True
    if n_heads * per_head >= n_groups:
        for g in rng.permutation(np.flatnonzero(~mask.any(axis=0))):
            # Some covered group has >= 2 heads (pigeonhole), so a swap keeps it covered.
            counts = mask.sum(axis=0)
            candidates = np.argwhere(mask & (counts >= 2)[None, :])
            k, j = candidates[rng.integers(len(candidates))]
            mask[k, j] = False
            mask[k, g] = True
    return mask


def set_head_mask(model: Ensemble, mask: np.ndarray) -> None:
    """Store a bool head x group mask (n_heads, n_groups) in ``model.head_mask``."""
    groups = model.config.mask_groups
    if groups is None:
        raise ValueError("the model has no mask_groups in its config; set them to use a head mask")
    mask = np.asarray(mask)
    expected = (model.config.n_heads, len(groups))
    if mask.shape != expected:
        raise ValueError(
            f"head mask has shape {mask.shape}, expected (n_heads, n_groups) = {expected}"
        )
    if mask.dtype != bool:
        raise ValueError(f"head mask must be boolean, got dtype {mask.dtype}")
    model.head_mask.copy_(torch.from_numpy(mask))


# --------------------------------------------------------------------------- prediction


def as_matrix(name: str, x, input_dim: int) -> np.ndarray:
    # contiguous: torch.from_numpy refuses negative strides (e.g. x[::-1])
    arr = np.ascontiguousarray(x, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[1] != input_dim:
        raise ValueError(f"{name} must have shape (n, {input_dim}), got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains non-finite values")
    return arr




def _model_device(model: nn.Module) -> torch.device:
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


@torch.no_grad()
def predict(
    model: Ensemble, X, *, batch_size: int = 4096, device: str | torch.device | None = None
) -> np.ndarray:
    """Head outputs, float32 (N, K), in eval mode without gradients.

    Runs where the model is unless ``device`` is given (then the model moves there).
    """
    arr = as_matrix("X", X, model.config.input_dim)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    dev = _model_device(model) if device is None else pick_device(str(device))
    model.to(dev)
    was_training = model.training
    model.eval()
    out = np.empty((len(arr), model.config.n_heads), dtype=np.float32)
    try:
        for lo in range(0, len(arr), batch_size):
            chunk = torch.from_numpy(arr[lo : lo + batch_size]).to(dev, model.input_mean.dtype)
            out[lo : lo + batch_size] = model(chunk).float().cpu().numpy()
    finally:
        model.train(was_training)
    return out


def predict_pairs(
    model: Ensemble, xa, xb, *, batch_size: int = 4096, device: str | torch.device | None = None
) -> np.ndarray:
    """Reward margins r_k(a) - r_k(b), float32 (N, K): the logits that A is preferred."""
    xa = as_matrix("xa", xa, model.config.input_dim)
    xb = as_matrix("xb", xb, model.config.input_dim)
    if xa.shape != xb.shape:
        raise ValueError(f"xa and xb must have the same shape, got {xa.shape} and {xb.shape}")
    ra = predict(model, xa, batch_size=batch_size, device=device)
    rb = predict(model, xb, batch_size=batch_size, device=device)
    return ra - rb


# --------------------------------------------------------------------------- storage


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}


def ensemble_to_bytes(model: Ensemble) -> tuple[bytes, str]:
    """(safetensors bytes of the state dict incl. buffers, config JSON)."""
    return st_save(_cpu_state(model)), model.config.to_json()


def ensemble_from_bytes(
    weights: bytes, config_json: str, *, device: str | torch.device | None = None
) -> Ensemble:
    """Rebuild an ensemble from ``ensemble_to_bytes`` output (on the CPU unless ``device``)."""
    config = EnsembleConfig.from_dict(json.loads(config_json))
    model = build_ensemble(config)
    model.load_state_dict(st_load(bytes(weights)), strict=True)
    model.eval()
    if device is not None:
        model.to(pick_device(str(device)))
    return model


def _base_path(path: str | Path) -> str:
    text = str(path)
    for suffix in (".safetensors", ".json"):
        if text.endswith(suffix):
            return text[: -len(suffix)]
    return text


def save_ensemble(model: Ensemble, path: str | Path) -> None:
    """Write ``<path>.safetensors`` (weights and buffers) and ``<path>.json`` (config)."""
    base = _base_path(path)
    weights, config_json = ensemble_to_bytes(model)
    Path(base + ".safetensors").write_bytes(weights)
    Path(base + ".json").write_text(config_json + "\n", encoding="utf-8")


def load_ensemble(path: str | Path, *, device: str | torch.device | None = None) -> Ensemble:
    """Load what ``save_ensemble`` wrote."""
    base = _base_path(path)
    weights = Path(base + ".safetensors").read_bytes()
    config_json = Path(base + ".json").read_text(encoding="utf-8")
    return ensemble_from_bytes(weights, config_json, device=device)


def fingerprint(model: Ensemble) -> str:
    """Short sha256 hex (16 chars) of the config JSON and the weights' bytes; deterministic."""
    weights, config_json = ensemble_to_bytes(model)
    return hashlib.sha256(config_json.encode("utf-8") + b"\0" + weights).hexdigest()[:16]
