"""The pages render; the engine decides.

The rule, checked on the source of every module under pages/ (an AST walk, no import):

1. numpy is imported only as ``import numpy as np`` and only by the figure modules
   pages/_shared/charts.py, which shapes engine arrays for plotly (elsewhere only under ``if TYPE_CHECKING:``,
   for type hints). No ``from numpy import ...`` anywhere.
2. Every ``np.<name>(...)`` call is one of PRESENTATION_CALLS: building, stacking or
   selecting arrays and scaling marker sizes and axis ranges. Math on data
   (np.exp, np.log, np.dot, np.argsort, np.cumsum, np.mean, np.linalg..., any other)
   fails the test.
3. No ``@`` (matrix product) anywhere in pages/.
4. No method call named like array math (ARRAY_MATH: .argsort(), .argmax(), .cumsum(),
   .dot(), .mean(), .sum(), ...) on anything, so math cannot reach the pages through an
   engine array's own methods either. KNOWN_EXCEPTIONS lists the places that still do
   (with why and where they belong); the test fails if one of them disappears, so the
   list cannot go stale.

And the engine modules the pages and the live benchmark use import no streamlit.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = REPO / "pages"
# The figure modules, the only ones that may hold numpy: figures need hover columns,
# sizes, padded ranges.
NUMPY_MODULES = {"pages/_shared/charts.py"}
PRESENTATION_CALLS = {
    "arange", "array", "asarray", "ascontiguousarray", "clip", "concatenate", "flatnonzero",
    "ptp", "rint", "sqrt", "stack", "where", "zeros_like",
}
ARRAY_MATH = {
    "argmax", "argmin", "argpartition", "argsort", "average", "cumprod", "cumsum", "dot", "einsum",
    "exp", "expm1", "inner", "log", "log1p", "log2", "matmul", "mean", "median", "nanmean",
    "nansum", "outer", "prod", "std", "sum", "tanh", "var",
}
# (module, enclosing function, method): what each computes and where it belongs. None today:
# the effective-heads mean and the share of "a" per group moved to protocol and data.
KNOWN_EXCEPTIONS: set[tuple[str, str, str]] = set()


def _modules() -> list[Path]:
    return sorted(PAGES.rglob("*.py"))


def _findings(path: Path, root: Path = REPO) -> list[tuple[str, str, str, int]]:
    """(rule, enclosing function, name, line) of every breach of the rule in one module."""
    rel = path.relative_to(root).as_posix()
    tree = ast.parse(path.read_text(), filename=rel)
    out = []

    def visit(node: ast.AST, where: str) -> None:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            return  # imports for type hints only: nothing runs
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            where = node.name
        elif isinstance(node, ast.Lambda):
            where = "<lambda>"
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "numpy" and (rel not in NUMPY_MODULES or alias.asname != "np"):
                    out.append(("numpy import", where, alias.name, node.lineno))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "numpy":
            out.append(("numpy import", where, node.module, node.lineno))
        elif isinstance(node, ast.BinOp | ast.AugAssign) and isinstance(node.op, ast.MatMult):
            out.append(("@", where, "@", node.lineno))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            func = node.func
            base = func.value
            if isinstance(base, ast.Name) and base.id in ("np", "numpy"):
                if func.attr not in PRESENTATION_CALLS:
                    out.append(("np call", where, func.attr, node.lineno))
            elif isinstance(base, ast.Attribute) and isinstance(base.value, ast.Name) and base.value.id == "np":
                out.append(("np call", where, f"{base.attr}.{func.attr}", node.lineno))  # np.linalg.x
            elif func.attr in ARRAY_MATH:
                out.append(("array math", where, func.attr, node.lineno))
        for child in ast.iter_child_nodes(node):
            visit(child, where)

    visit(tree, "<module>")
    return out


def test_no_page_module_does_arithmetic_on_arrays():
    breaches, excepted = [], set()
    for path in _modules():
        rel = path.relative_to(REPO).as_posix()
        for rule, where, name, line in _findings(path):
            if rule == "array math" and (rel, where, name) in KNOWN_EXCEPTIONS:
                excepted.add((rel, where, name))
            else:
                breaches.append(f"{rel}:{line} in {where}: {rule} {name}")
    assert not breaches, "pages/ must leave array math to hyre_engine:\n" + "\n".join(breaches)
    assert excepted == KNOWN_EXCEPTIONS, f"fixed, so drop from KNOWN_EXCEPTIONS: {KNOWN_EXCEPTIONS - excepted}"


@pytest.mark.parametrize(
    ("source", "rule"),
    [
        ("import numpy as np\ndef f(z):\n    return np.exp(z)\n", "np call"),
        ("import numpy as np\ndef f(z):\n    return np.linalg.norm(z)\n", "np call"),
        ("def f(a, b):\n    return a @ b\n", "@"),
        ("def f(w):\n    return w.argsort()\n", "array math"),
        ("from numpy import exp\n", "numpy import"),
    ],
)
def test_the_rule_catches_each_kind_of_breach(tmp_path, source, rule):
    path = tmp_path / "page.py"
    path.write_text(source)
    # outside the repository, so not the charts module: numpy is not allowed either
    assert rule in [f[0] for f in _findings(path, tmp_path)]


def test_live_engine_and_charts_import_no_streamlit():
    # A fresh interpreter: other tests may have imported streamlit already.
    code = (
        "import sys, hyre_engine.live, hyre_engine.profiles, hyre_engine.pca, pages._shared.charts, pages._shared.live_svg; "
        "print('streamlit' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "False"


def test_display_labels_cover_every_registered_name():
    from hyre_engine import (
        acquisition,
        data,
        ensemble,
        evaluate,
        jobs,
        joint_training,
        numerics,
        profiles,
        protocol,
        store,
    )
    from pages._shared import labels

    registries = {
        "STRATEGY_TEXT": acquisition.PREFERENCE_STRATEGIES,
        "EVAL_STRATEGY_TEXT": protocol.STRATEGIES,
        "METHOD_TEXT": protocol.ALL_METHODS,
        "LOSS_TEXT": protocol.LOSSES,
        "STAGE_TEXT": evaluate.EVALUATE_STAGES + jobs.JOB_STAGES,
        "LABEL_TEXT": numerics.SESSION_LABELS,
        "MODE_TEXT": store.SESSION_MODES,
        "KIND_TEXT": ensemble.KINDS,
        "FINETUNE_MODE_TEXT": joint_training.MODES,
        "FORMAT_TEXT": data.FORMATS,
        "MEASURE_TEXT": tuple(profiles.MEASURES),
        "MEASURE_SHORT": tuple(profiles.MEASURES),
    }
    missing = {
        name: sorted(set(names) - set(getattr(labels, name)))
        for name, names in registries.items()
        if set(names) - set(getattr(labels, name))
    }
    assert not missing, f"display text missing for registered names: {missing}"
