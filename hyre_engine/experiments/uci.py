"""Energy, Kin8nm and CCPP with the paper's OOD split: RMSE of the uniform ensemble and of
HyRe after 32 actively chosen labels, for four ensemble kinds (one an MC-dropout MLP).

The data folder is given by ``--data`` or the HYRE_UCI_DIR environment variable: the
files are public but not part of this repository."""

from __future__ import annotations

import gzip
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from hyre_engine import ensemble as ens
from hyre_engine import training
from hyre_engine.acquisition import adaptive_order
from hyre_engine.experiments.common import (
    REGRESSION_BETA,
    UCI_DEFAULT_SEEDS,
    Log,
    check_seeds,
    quiet,
    rmse,
    uci_dir,
)
from hyre_engine.reweight import Posterior

UCI_DATASETS = {"energy": "energy", "kin8nm": "kin8nm", "ccpp": "power-plant"}
UCI_MODELS = ("vanilla", "epinet", "shared", "dropout")
# The paper's OOD split: the top and bottom 5% by mean standardised feature.
UCI_OOD_TAIL = 0.05
# Share of the middle 90% kept for validation (the paper does not say; 20% is common).
UCI_VAL_FRACTION = 0.2
# The paper's UCI networks: two hidden layers of 50 units, 100 members.
UCI_HIDDEN = 50
UCI_HEADS = 100
# 32 labels chosen one at a time by the variance criterion (the paper's Table 4).
UCI_LABELS = 32
UCI_STRATEGY = "variance"
# MC dropout: Gal & Ghahramani's UCI grid tops out at 0.1; the largest rate gives the
# 100 "heads" the most diversity for HyRe to choose from.
DROPOUT_RATE = 0.1


@dataclass(frozen=True)
class UCISizes:
    # Measured on the shared 2-core CPU: ~15 ms per step of 256 rows for 100 members, so
    # 1000 steps (~40 epochs of kin8nm, ~460 of energy) keep a model near 15 s.
    steps: int = 1000
    batch_size: int = 256
    lr: float = 3e-3
    n_heads: int = UCI_HEADS
    max_train: int | None = None


UCI_QUICK = UCISizes(steps=30, batch_size=64, n_heads=8, max_train=200)


def load_uci(data_dir: str | Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(X (n, d), y (n,)) of one UCI set, named as in ``UCI_DATASETS`` (energy, kin8nm, ccpp)."""
    if name not in UCI_DATASETS:
        raise ValueError(f"unknown UCI data set {name!r}; valid: {', '.join(UCI_DATASETS)}")
    folder = Path(data_dir) / UCI_DATASETS[name]
    path = folder / "data.txt.gz"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found (pass --data DIR, the folder holding {UCI_DATASETS[name]}/)")
    with gzip.open(path, "rt") as fh:
        data = np.loadtxt(fh)
    feats = np.loadtxt(folder / "index_features.txt", dtype=int, ndmin=1)
    target = int(np.loadtxt(folder / "index_target.txt", dtype=int))
    return data[:, feats].astype(np.float64), data[:, target].astype(np.float64)


def ood_split(
    X, *, tail: float = UCI_OOD_TAIL, val_fraction: float = UCI_VAL_FRACTION, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The paper's OOD split: (train_idx, val_idx, ood_idx), sorted index arrays.

    Rows are ranked by the mean of their standardised features (X (n, d)); the lowest
    and highest ``round(tail * n)`` rows are the OOD set; the middle rows are split at
    random (seeded) into validation (``val_fraction``) and training.
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] < 3:
        raise ValueError(f"X must be (n, d) with n >= 3, got shape {X.shape}")
    if not 0 < tail < 0.5 or not 0 <= val_fraction < 1:
        raise ValueError(f"need 0 < tail < 0.5 and 0 <= val_fraction < 1, got {tail}, {val_fraction}")
    n = X.shape[0]
    std = X.std(axis=0)
    std[std == 0] = 1.0
    score = ((X - X.mean(axis=0)) / std).mean(axis=1)
    order = np.argsort(score, kind="stable")
    n_tail = max(1, int(round(tail * n)))
    ood = np.concatenate([order[:n_tail], order[n - n_tail:]])
    middle = np.random.default_rng(seed).permutation(order[n_tail: n - n_tail])
    n_val = int(round(val_fraction * len(middle)))
    return np.sort(middle[n_val:]), np.sort(middle[:n_val]), np.sort(ood)


class DropoutMLP(nn.Module):
    """An MLP with dropout after every hidden layer (MC dropout).

    ``forward`` (training) draws fresh masks; ``heads`` evaluates K fixed masks drawn
    from the seed, (B, D) -> (B, K), so head k is the same function on every input,
    which reweighting needs.
    """

    def __init__(
        self, input_dim: int, *, hidden: int = UCI_HIDDEN, n_layers: int = 2,
        rate: float = DROPOUT_RATE, n_heads: int = UCI_HEADS, seed: int = 0,
    ) -> None:
        super().__init__()
        if not 0 <= rate < 1:
            raise ValueError(f"rate must be in [0, 1), got {rate}")
        gen = torch.Generator().manual_seed(seed)
        dims = [input_dim] + [hidden] * n_layers
        self.rate = rate
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for i in range(n_layers):
            bound = 1.0 / math.sqrt(dims[i])  # torch.nn.Linear's default scale
            self.weights.append(nn.Parameter((torch.rand(dims[i], dims[i + 1], generator=gen) * 2 - 1) * bound))
            self.biases.append(nn.Parameter((torch.rand(dims[i + 1], generator=gen) * 2 - 1) * bound))
        bound = 1.0 / math.sqrt(hidden)
        self.w_out = nn.Parameter((torch.rand(hidden, generator=gen) * 2 - 1) * bound)
        self.b_out = nn.Parameter(torch.zeros(1))
        keep = torch.rand(n_layers, n_heads, hidden, generator=gen) >= rate
        self.register_buffer("masks", keep.float() / (1.0 - rate))
        self._train_gen = torch.Generator().manual_seed(seed + 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, D) -> (B,) with fresh dropout masks (training)."""
        h = x
        for w, b in zip(self.weights, self.biases, strict=True):
            h = torch.relu(h @ w + b)
            keep = torch.rand(h.shape, generator=self._train_gen) >= self.rate
            h = h * keep / (1.0 - self.rate)
        return h @ self.w_out + self.b_out

    @torch.no_grad()
    def heads(self, x: torch.Tensor) -> torch.Tensor:
        """(B, D) -> (B, K): one output per fixed dropout mask."""
        h = torch.relu(x @ self.weights[0] + self.biases[0])[:, None, :] * self.masks[0][None]
        for i in range(1, len(self.weights)):
            h = torch.relu(h @ self.weights[i] + self.biases[i]) * self.masks[i][None]
        return h @ self.w_out + self.b_out


def _fit_dropout(model: DropoutMLP, X: np.ndarray, y: np.ndarray, sz: UCISizes, seed: int) -> None:
    xt, yt = torch.from_numpy(X.astype(np.float32)), torch.from_numpy(y.astype(np.float32))
    opt = torch.optim.Adam(model.parameters(), lr=sz.lr)
    rng = np.random.default_rng(seed)
    model.train()
    for _ in range(sz.steps):
        idx = torch.from_numpy(rng.integers(len(xt), size=min(sz.batch_size, len(xt))))
        loss = ((model(xt[idx]) - yt[idx]) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()


def _uci_config(kind: str, input_dim: int, n_heads: int, seed: int) -> ens.EnsembleConfig:
    """The paper's two-layer, 50-unit networks in each ensemble kind."""
    common = dict(kind=kind, input_dim=input_dim, n_heads=n_heads, hidden=UCI_HIDDEN, seed=seed)
    if kind == "shared":
        # one shared learnable layer, then per-head (learnable + prior) layers: two layers in all
        return ens.EnsembleConfig(**common, trunk_layers=1, trunk_hidden=UCI_HIDDEN, n_layers=1)
    if kind == "vanilla":
        return ens.EnsembleConfig(**common, n_layers=2, prior_scale=0.0)
    return ens.EnsembleConfig(**common, n_layers=2)


def uci_head_predictions(
    kind: str, x_train: np.ndarray, y_train: np.ndarray, x_eval: list[np.ndarray], *,
    sizes: UCISizes, seed: int,
) -> list[np.ndarray]:
    """Train one model of ``kind`` (UCI_MODELS) on standardised data; head predictions
    (n_i, K) on each array of ``x_eval``."""
    if kind not in UCI_MODELS:
        raise ValueError(f"unknown model {kind!r}; valid: {', '.join(UCI_MODELS)}")
    if kind == "dropout":
        model = DropoutMLP(x_train.shape[1], n_heads=sizes.n_heads, seed=seed)
        _fit_dropout(model, x_train, y_train, sizes, seed)
        return [model.heads(torch.from_numpy(x.astype(np.float32))).numpy().astype(np.float64) for x in x_eval]
    model = ens.build_ensemble(_uci_config(kind, x_train.shape[1], sizes.n_heads, seed))
    training.fit_ensemble(
        model, task="regression", inputs=x_train, targets=y_train, steps=sizes.steps,
        lr=sizes.lr, batch_size=sizes.batch_size, seed=seed, device="cpu",
    )
    return [ens.predict(model, x).astype(np.float64) for x in x_eval]


def active_hyre_regression(
    Z, y, *, n_labels: int = UCI_LABELS, beta: float = REGRESSION_BETA,
    strategy: str = UCI_STRATEGY, seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Label ``n_labels`` items of a pool one at a time, each the top ``strategy`` score
    under the current weights; squared-error HyRe. Z (n, K) values, y (n,) targets.
    Returns (labelled indices in order (n_labels,), final weights (K,))."""
    Z = np.asarray(Z, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if Z.ndim != 2 or y.shape != (Z.shape[0],):
        raise ValueError(f"need Z (n, K) and y (n,), got {Z.shape} and {y.shape}")
    post = Posterior(Z.shape[1], loss="squared", beta=beta)
    chosen = adaptive_order(Z, y, n_labels, posterior=post, strategy=strategy, seed=seed)
    return chosen.astype(np.intp), post.weights


def _standardised_split(X: np.ndarray, y: np.ndarray, seed: int, sz: UCISizes):
    """The OOD split of one seed, inputs and targets standardised with training statistics:
    (split indices (tr, va, ood), inputs by split, y_tr, y_ood, (y_mu, y_sd))."""
    tr, va, ood = ood_split(X, seed=seed)
    if sz.max_train is not None and len(tr) > sz.max_train:
        tr = np.sort(np.random.default_rng(seed).choice(tr, sz.max_train, replace=False))
    mu, sd = X[tr].mean(axis=0), X[tr].std(axis=0)
    sd[sd == 0] = 1.0
    xs = {k: ((X[idx] - mu) / sd).astype(np.float32) for k, idx in (("tr", tr), ("va", va), ("ood", ood))}
    y_mu, y_sd = float(y[tr].mean()), float(y[tr].std())
    return (tr, va, ood), xs, (y[tr] - y_mu) / y_sd, (y[ood] - y_mu) / y_sd, (y_mu, y_sd)


def _uci_seed(name: str, X: np.ndarray, y: np.ndarray, seed: int, *, models, sz: UCISizes,
              n_labels: int, per_model: dict, log: Log) -> dict:
    """Train every model on one seed's split and append its RMSEs to ``per_model``;
    returns the rows used by the split."""
    (tr, va, ood), xs, y_tr, y_ood, (y_mu, y_sd) = _standardised_split(X, y, seed, sz)
    for m in models:
        t0 = time.perf_counter()
        Z_val, Z_ood = uci_head_predictions(m, xs["tr"], y_tr, [xs["va"], xs["ood"]], sizes=sz, seed=seed)
        labelled, w = active_hyre_regression(Z_ood, y_ood, n_labels=n_labels, seed=seed)
        rest = np.setdiff1d(np.arange(len(ood)), labelled)
        per_model[m]["uniform"].append(y_sd * rmse(Z_ood[rest].mean(axis=1), y_ood[rest]))
        per_model[m]["hyre"].append(y_sd * rmse(Z_ood[rest] @ w, y_ood[rest]))
        per_model[m]["val"].append(y_sd * rmse(Z_val.mean(axis=1), (y[va] - y_mu) / y_sd))
        log(f"uci {name} seed {seed} {m}: {time.perf_counter() - t0:.1f}s "
            f"uniform {per_model[m]['uniform'][-1]:.4g} hyre {per_model[m]['hyre'][-1]:.4g}")
    return {"train": int(len(tr)), "val": int(len(va)), "ood": int(len(ood))}


def run_uci(
    data_dir: str | Path | None = None, *, seeds: int = UCI_DEFAULT_SEEDS, quick: bool = False,
    datasets: tuple[str, ...] = tuple(UCI_DATASETS), models: tuple[str, ...] = UCI_MODELS,
    log: Log = quiet,
) -> dict:
    """RMSE on the OOD rows: uniform ensemble vs HyRe after 32 variance-chosen labels.

    Per data set and seed: the OOD split (``ood_split``), inputs standardised and
    targets standardised with training statistics; each model trained; HyRe labels
    32 OOD rows actively and both methods are scored on the remaining OOD rows, in the
    target's original units. ``rmse[data][model] = {"uniform", "hyre"}`` means over seeds.
    ``data_dir`` defaults to $HYRE_UCI_DIR.
    """
    check_seeds(seeds)
    folder = uci_dir(data_dir)
    sz = UCI_QUICK if quick else UCISizes()
    n_labels = 8 if quick else UCI_LABELS
    rmse: dict = {}
    rmse_std: dict = {}
    val_rmse: dict = {}
    rows_used: dict = {}
    for name in datasets:
        X, y = load_uci(folder, name)
        per_model = {m: {"uniform": [], "hyre": [], "val": []} for m in models}
        for seed in range(seeds):
            rows_used[name] = _uci_seed(name, X, y, seed, models=models, sz=sz, n_labels=n_labels,
                                        per_model=per_model, log=log)
        rmse[name] = {m: {k: round(float(np.mean(v[k])), 4) for k in ("uniform", "hyre")} for m, v in per_model.items()}
        rmse_std[name] = {m: {k: round(float(np.std(v[k])), 4) for k in ("uniform", "hyre")} for m, v in per_model.items()}
        val_rmse[name] = {m: round(float(np.mean(v["val"])), 4) for m, v in per_model.items()}
    return {
        "experiment": "uci",
        "metric": "rmse (original units, OOD rows not labelled)",
        "seeds": seeds,
        "n_labels": n_labels,
        "strategy": UCI_STRATEGY,
        "beta": REGRESSION_BETA,
        "rmse": rmse,
        "rmse_std": rmse_std,
        "val_rmse_uniform": val_rmse,
        "rows": rows_used,
    }
