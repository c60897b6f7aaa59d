"""1-D regression on data from a GP prior: the top principal components of the ensemble's
functions as an interactive HTML figure, and HyRe RMSE vs n."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hyre_engine import ensemble as ens
from hyre_engine import training
from hyre_engine.experiments.common import (
    DEFAULT_SEEDS,
    REGRESSION_BETA,
    Log,
    check_seeds,
    quiet,
    rmse,
    seed_stats,
)
from hyre_engine.pca import FunctionPCA
from hyre_engine.reweight import Posterior, weighted_value


@dataclass(frozen=True)
class GPSizes:
    n_values: tuple[int, ...] = (0, 1, 2, 4, 8, 16)
    n_train: int = 20
    n_grid: int = 200
    n_heads: int = ens.DEFAULT_HEADS
    hidden: int = ens.DEFAULT_HIDDEN
    steps: int = 1500


GP_QUICK = GPSizes(n_values=(0, 2, 8), n_train=12, n_grid=60, n_heads=16, hidden=32, steps=100)
# RBF kernel of the GP prior (unit variance); lengthscale 0.5 gives a few bumps on [-1, 1].
GP_LENGTHSCALE = 0.5
# Observation noise of the training targets.
GP_NOISE = 0.05
# Training inputs fill [-1, 1]; the grid extends to [-3, 3], where the heads must disagree.
GP_TRAIN_RANGE = (-1.0, 1.0)
GP_GRID_RANGE = (-3.0, 3.0)
# Components shown and reported: the top 3, the paper's GP figure.
GP_COMPONENTS = 3
GP_LR = 3e-3


def gp_sample(x: np.ndarray, *, seed: int, lengthscale: float = GP_LENGTHSCALE) -> np.ndarray:
    """One draw (n,) of a zero-mean, unit-variance RBF GP at the points x (n,)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"x must be 1-D (n,), got shape {x.shape}")
    k = np.exp(-0.5 * ((x[:, None] - x[None, :]) / lengthscale) ** 2)
    chol = np.linalg.cholesky(k + 1e-6 * np.eye(len(x)))  # jitter: the RBF kernel is near-singular
    return chol @ np.random.default_rng([20244, seed]).standard_normal(len(x))


def run_gp(
    *, seeds: int = DEFAULT_SEEDS, quick: bool = False, html_path: str | Path | None = None,
    log: Log = quiet,
) -> dict:
    """1-D regression on a GP draw: the ensemble's top principal components and HyRe RMSE.

    Per seed: one GP function on the grid and n_train noisy training points in [-1, 1];
    a 100-head shared ensemble with priors (regression). FunctionPCA of the heads'
    predictions on the grid; HyRe with n noise-free labels at random grid points
    (squared error, beta = 1) vs the uniform mean, RMSE on the other grid points.
    Seed 0's ensemble is drawn to ``html_path`` when given.
    """
    check_seeds(seeds)
    sz = GP_QUICK if quick else GPSizes()
    n_values = list(sz.n_values)
    grid = np.linspace(*GP_GRID_RANGE, sz.n_grid)
    rows: dict[str, list[list[float]]] = {"hyre": [], "uniform": []}
    ratios, figure_data = [], None
    for seed in range(seeds):
        rng = np.random.default_rng([20245, seed])
        x_train = np.sort(rng.uniform(*GP_TRAIN_RANGE, size=sz.n_train))
        f = gp_sample(np.concatenate([grid, x_train]), seed=seed)
        f_grid, f_train = f[: len(grid)], f[len(grid):]
        y_train = f_train + GP_NOISE * rng.standard_normal(sz.n_train)
        model = ens.build_ensemble(ens.EnsembleConfig(
            kind="shared", input_dim=1, n_heads=sz.n_heads, hidden=sz.hidden, seed=seed,
        ))
        training.fit_ensemble(
            model, task="regression", inputs=x_train[:, None], targets=y_train,
            steps=sz.steps, lr=GP_LR, batch_size=sz.n_train, seed=seed, device="cpu",
        )
        Z = ens.predict(model, grid[:, None].astype(np.float32)).astype(np.float64)
        pca = FunctionPCA(GP_COMPONENTS).fit(Z)
        ratios.append(pca.explained_variance_ratio_)
        order = rng.permutation(len(grid))
        rest = order[max(n_values):]
        post = Posterior(Z.shape[1], loss="squared", beta=REGRESSION_BETA)
        hyre, labelled = [], 0
        for n in n_values:
            if n > labelled:
                post.add(Z[order[labelled:n]], f_grid[order[labelled:n]])
                labelled = n
            hyre.append(rmse(weighted_value(Z[rest], post.weights), f_grid[rest]))
        rows["hyre"].append(hyre)
        rows["uniform"].append([rmse(Z[rest].mean(axis=1), f_grid[rest])] * len(n_values))
        if seed == 0:
            figure_data = (grid, Z, pca, x_train, y_train, f_grid)
        log(f"gp seed {seed} done")
    result = {
        "experiment": "gp",
        "metric": "rmse",
        "n": n_values,
        "seeds": seeds,
        "summary": {m: seed_stats(r) for m, r in rows.items()},
        "explained_variance_ratio": seed_stats(ratios),
    }
    if html_path is not None and figure_data is not None:
        write_gp_figure(*figure_data, path=html_path)
        result["html"] = str(html_path)
    return result


def write_gp_figure(
    grid: np.ndarray, Z: np.ndarray, pca: FunctionPCA, x_train: np.ndarray, y_train: np.ndarray,
    f_grid: np.ndarray, *, path: str | Path, n_heads_shown: int = 30,
) -> None:
    """Interactive HTML (plotly, inlined: no CDN): the heads, then mean +- 2 sd along each PC.

    grid (G,), Z (G, K) head predictions, pca fitted on Z, training points (n,), truth (G,).
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    n_comp = pca.n_components_
    titles = ["ensemble heads, data and the true function"] + [
        f"PC {i + 1} ({100 * pca.explained_variance_ratio_[i]:.1f}% of the variance)"
        for i in range(n_comp)
    ]
    fig = make_subplots(rows=1, cols=n_comp + 1, subplot_titles=titles)
    for k in range(min(n_heads_shown, Z.shape[1])):
        fig.add_trace(go.Scatter(
            x=grid, y=Z[:, k], mode="lines", line={"width": 1, "color": "rgba(90,90,200,0.35)"},
            name=f"head {k}", showlegend=False,
        ), row=1, col=1)
    fig.add_trace(go.Scatter(x=grid, y=f_grid, mode="lines", line={"color": "black", "dash": "dash"},
                             name="true function"), row=1, col=1)
    fig.add_trace(go.Scatter(x=x_train, y=y_train, mode="markers", marker={"color": "red", "size": 6},
                             name="training data"), row=1, col=1)
    for i in range(n_comp):
        sd = math.sqrt(pca.explained_variance_[i])
        for sign, colour in ((2.0, "darkorange"), (-2.0, "seagreen")):
            fig.add_trace(go.Scatter(
                x=grid, y=pca.mean_ + sign * sd * pca.components_[i], mode="lines",
                line={"color": colour}, name=f"mean {'+' if sign > 0 else '-'} 2 sd along PC",
                showlegend=i == 0,
            ), row=1, col=i + 2)
        fig.add_trace(go.Scatter(x=grid, y=pca.mean_, mode="lines", line={"color": "gray"},
                                 name="ensemble mean", showlegend=i == 0), row=1, col=i + 2)
    fig.update_layout(title="GP regression: the ensemble's main directions of disagreement",
                      height=420, width=380 * (n_comp + 1))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.write_html(str(path), include_plotlyjs=True)


