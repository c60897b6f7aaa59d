"""Text tables of the experiments' results."""

from __future__ import annotations


def _cell(mean: float, std: float | None) -> str:
    return f"{mean:.3f}" if std is None else f"{mean:.3f}±{std:.3f}"


def _curve_table(result: dict) -> list[str]:
    methods = list(result["summary"])
    width = max(13, *(len(m) + 2 for m in methods))
    header = f"{'n':>5}" + "".join(f"{m:>{width}}" for m in methods)
    lines = [header, "-" * len(header)]
    for i, n in enumerate(result["n"]):
        cells = []
        for m in methods:
            s = result["summary"][m]
            cells.append(f"{_cell(s['mean'][i], s.get('std', [None] * (i + 1))[i]):>{width}}")
        lines.append(f"{n:>5}" + "".join(cells))
    return lines


def format_table(result: dict) -> str:
    """A readable text table of any ``run_*`` result."""
    lines = [f"repro {result.get('experiment', '?')} ({result.get('seeds', '?')} seeds, "
             f"{result.get('metric', '')})"]
    if "rmse" in result:
        models = list(next(iter(result["rmse"].values())))
        header = f"{'data':<8}" + "".join(f"{m + ' unif':>15}{m + ' hyre':>15}" for m in models)
        lines += [header, "-" * len(header)]
        for name, cells in result["rmse"].items():
            lines.append(f"{name:<8}" + "".join(
                f"{cells[m]['uniform']:>15.4g}{cells[m]['hyre']:>15.4g}" for m in models))
        lines.append(f"(HyRe: {result['n_labels']} labels by {result['strategy']}, beta {result['beta']})")
        return "\n".join(lines)
    if "prior_scale" in result:
        lines += [f"{'prior scale':>12}{'agree w/ majority':>20}{'max agree held-out':>20}",
                  "-" * 52]
        for i, s in enumerate(result["prior_scale"]):
            lines.append(f"{s:>12g}"
                         f"{_cell(result['majority_agreement'][i], result['majority_agreement_std'][i]):>20}"
                         f"{_cell(result['max_agreement'][i], result['max_agreement_std'][i]):>20}")
        lines += ["", f"accuracy on held-out labelers (HyRe at prior scale {result['hyre_prior_scale']:g})"]
    lines += _curve_table(result)
    if "explained_variance_ratio" in result:
        ratios = ", ".join(f"{v:.3f}" for v in result["explained_variance_ratio"]["mean"])
        lines.append(f"explained variance ratio of the top components: {ratios}")
    if "html" in result:
        lines.append(f"figure: {result['html']}")
    return "\n".join(lines)


