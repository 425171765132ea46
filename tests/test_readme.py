"""The README's map of the code matches the tree and the import contracts."""

from __future__ import annotations

import configparser
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _section(title: str) -> str:
    start = README.index(f"## {title}")
    end = README.find("\n## ", start + 1)
    return README[start:end if end > 0 else None]


def test_every_path_in_where_things_are_exists():
    section = _section("Where things are")
    paths = {p for p in re.findall(r"`([\w./-]+)`", section) if "/" in p and not p.startswith("/")}
    assert len(paths) > 30
    missing = sorted(p for p in paths if not (ROOT / p).exists())
    assert not missing, f"README names files that do not exist: {missing}"


def test_every_python_module_is_in_the_map():
    section = _section("Where things are")
    named = set(re.findall(r"`([\w./-]+\.py)`", section))
    packages = ("conf", "schemas", "lakehouse", "catalog", "streaming", "udfs", "encoders", "search",
                "personalization", "vectorsearch", "training", "evaluation", "demo", "app")
    modules = {str(p.relative_to(ROOT)) for pkg in packages for p in (ROOT / pkg).rglob("*.py")
               if p.name != "__init__.py"}
    assert not sorted(modules - named), f"modules the README's map does not name: {sorted(modules - named)}"


def test_layer_diagram_matches_the_import_linter_contract():
    parser = configparser.ConfigParser()
    parser.read(ROOT / ".importlinter")
    layers = [line.strip() for line in parser["importlinter:contract:layers"]["layers"].strip().splitlines()]
    block = re.search(r"```\n(bench.*?)```", _section("Where things are"), re.S).group(1)
    diagram = [re.split(r"\s{2,}", line.strip())[0] for line in block.strip().splitlines()]
    assert diagram == layers
    for layer in layers:
        for package in layer.split(" | "):
            assert (ROOT / package / "__init__.py").is_file(), package
