"""Module boundaries: imports run one way, the light modules stay light."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "hyre_engine"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """hyre_engine modules that ``path`` imports anywhere (function-level imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != "hyre_engine":
                found.add(name)
    return found


def import_graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py") if "demo_data" not in p.parts}
    modules = set(files)
    return {name: _imports(path, modules) - {name} for name, path in files.items()}


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_package_imports_have_no_cycle():
    graph = import_graph()
    assert "hyre_engine.protocol" in graph and "hyre_engine.numerics" in graph
    assert _find_cycle(graph) is None, " -> ".join(_find_cycle(graph))


def test_the_cycle_finder_finds_a_cycle():
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize(
    "low, high",
    [
        ("hyre_engine.numerics", "hyre_engine.reweight"),
        ("hyre_engine.reweight", "hyre_engine.protocol"),
        ("hyre_engine.protocol", "hyre_engine.pipeline"),
        ("hyre_engine.pipeline", "hyre_engine.evaluate"),
        ("hyre_engine.evaluate", "hyre_engine.cli"),
    ],
)
def test_dependencies_run_one_way(low, high):
    """Nothing below imports what is above it, directly or through other modules."""
    graph = import_graph()
    seen, todo = set(), [low]
    while todo:
        node = todo.pop()
        for dep in graph.get(node, ()):
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    assert high not in seen


def _fresh(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip()


def test_protocol_and_baselines_import_no_torch():
    code = ("import sys, hyre_engine.protocol, hyre_engine.baselines, hyre_engine.numerics; "
            "print(sorted(m for m in ('torch', 'duckdb', 'pandas') if m in sys.modules))")
    assert _fresh(code) == "[]"


def test_numerics_imports_nothing_but_numpy():
    code = ("import sys; before = set(sys.modules); import hyre_engine.numerics; "
            "new = {m.split('.')[0] for m in set(sys.modules) - before}; "
            "print(sorted(new - {'hyre_engine', 'numpy'}))")
    out = _fresh(code)
    assert "scipy" not in out and "torch" not in out


def test_the_command_line_help_imports_no_heavy_module():
    code = ("import sys; from hyre_engine.cli import build_parser; build_parser([]); "
            "import hyre_engine.experiments; "
            "print(sorted(m for m in ('torch', 'duckdb', 'pandas', 'scipy') if m in sys.modules))")
    assert _fresh(code) == "[]"


def test_training_is_where_torch_training_lives():
    from hyre_engine import baselines, ensemble, training

    assert not hasattr(ensemble, "fit_ensemble") and not hasattr(baselines, "finetune_heads")
    assert callable(training.fit_ensemble) and callable(training.finetune_heads)


# The longest a function of the engine may be, from its `def` line to its last line
# (docstring included): past this a function does several things, and each deserves a name.
MAX_FUNCTION_LINES = 60
# Functions allowed past the limit, each with the reason it cannot be split (keep it empty).
LONG_FUNCTION_ALLOWLIST: dict[str, str] = {}


def long_functions(root: Path = PACKAGE, limit: int = MAX_FUNCTION_LINES) -> dict[str, int]:
    """'module.py:function' -> lines, for every function or method of ``root`` over ``limit`` lines."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > limit:
                    found[f"{path.relative_to(root).as_posix()}:{node.name}"] = lines
    return found


def test_no_engine_function_is_over_60_lines():
    too_long = {name: n for name, n in long_functions().items() if name not in LONG_FUNCTION_ALLOWLIST}
    assert not too_long, f"engine functions over {MAX_FUNCTION_LINES} lines (split them into named steps): {too_long}"
    stale = set(LONG_FUNCTION_ALLOWLIST) - set(long_functions())
    assert not stale, f"allowed long functions that are no longer long (drop them from the list): {stale}"


def test_the_length_check_finds_a_long_function(tmp_path):
    body = "\n".join(f"        x{i} = {i}" for i in range(60))
    (tmp_path / "m.py").write_text(f"def short():\n    return 1\n\n\nclass C:\n    def long(self):\n{body}\n")
    assert long_functions(tmp_path) == {"m.py:long": 61}


def test_the_package_and_its_help_import_not_even_numpy():
    """`python -m hyre_engine --help` pays for argparse only (docs/engine.md: under 1 s)."""
    code = ("import sys, runpy; sys.argv = ['hyre_engine', '--help']\n"
            "try:\n    runpy.run_module('hyre_engine', run_name='__main__')\n"
            "except SystemExit:\n    pass\n"
            "import hyre_engine\n"
            "heavy = ('numpy', 'torch', 'duckdb', 'pandas', 'scipy')\n"
            "print(sorted(m for m in heavy if m in sys.modules), file=sys.stderr)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "usage:" in out.stdout and out.stderr.strip().splitlines()[-1] == "[]"
    # and every name still resolves on first use
    assert _fresh("import hyre_engine as he; print(he.weights_from_losses.__module__, he.Store.__name__)") == (
        "hyre_engine.reweight Store")
