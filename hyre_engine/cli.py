"""Command line: ``python -m hyre_engine <command> ...``.

Each command lives in the module that owns the concept and exposes
``register_cli(subparsers)``; the parser it adds sets ``func`` to the function
that runs it and returns an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# Never reach a model hub: every model this project loads is on disk.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# command name -> module that registers it
COMMAND_MODULES = {
    "demo-data": "hyre_engine.demo",
    "repro": "hyre_engine.synthetic",
    "build": "hyre_engine.pipeline",
    "evaluate": "hyre_engine.evaluate",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m hyre_engine",
        description="HyRe Studio engine: hypothesis reweighting for personalised reward models.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in COMMAND_MODULES.values():
        importlib.import_module(module_name).register_cli(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
