"""Structure the design asks for, checked on the source: a short write path, and back-ends that are declared."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "fashion_catalog"
# The write path: read -> plan -> encode -> assemble -> merge, and the MERGE without Spark.
WRITE_PATH = [*sorted((PACKAGE / "streaming").glob("*.py")), PACKAGE / "lakehouse" / "direct.py"]


def _functions(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            args = node.args
            names = [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs if a.arg not in ("self", "cls")]
            yield node.name, names


def test_no_function_in_the_write_path_takes_more_than_five_parameters():
    wide = [f"{path.relative_to(PACKAGE)}:{name}({len(args)})" for path in WRITE_PATH
            for name, args in _functions(path) if len(args) > 5]
    assert not wide, f"functions with more than 5 parameters: {wide}"


def test_the_batch_sequence_fits_in_one_short_module():
    assert len((PACKAGE / "streaming" / "runner.py").read_text().splitlines()) < 250


def test_search_and_the_index_back_ends_probe_for_no_capability():
    """Capabilities are runtime-checkable protocols (indexes.store), never hasattr/getattr probing."""
    probing = re.compile(r"\b(hasattr|getattr)\(")
    found = [f"{path.relative_to(PACKAGE)}:{n}" for folder in ("search", "indexes")
             for path in sorted((PACKAGE / folder).glob("*.py"))
             for n, line in enumerate(path.read_text().splitlines(), 1) if probing.search(line)]
    assert not found, found


def test_precision_names_are_written_once_in_the_registry():
    """Back-end names appear as string literals only in conf/precisions.py (and in docs and messages)."""
    names = ("openvino-bf16", "openvino-int8")
    spread = [f"{path.relative_to(PACKAGE)}" for path in sorted(PACKAGE.rglob("*.py"))
              if path.name != "precisions.py" and any(f'"{n}"' in path.read_text() for n in names)]
    assert not spread, f"precision names outside conf/precisions.py: {spread}"
