"""The README and the pages under ``docs/`` are checked: the map of the code in
``docs/architecture.md`` matches the tree and the import contracts, the commands and the settings
list match the code (a changed flag, module path or key fails CI), the README stays a front page,
and every link between the pages resolves.

Every ```bash block of README.md and docs/*.md is vetted command by command: ``python -m <module>``
runs ``main(["--help"])`` and every ``--flag`` shown must be in that help, every ``--set key=value``
must name a real setting; ``make <target>`` must be a Makefile target; ``uvicorn`` must name a
module-level ASGI app; the MLflow and schemathesis CLIs are asked for their own ``--help``. A block
that cannot run here says so in an HTML comment right above it (``<!-- not run in tests: why -->``).
Slow commands themselves run in their own tests (the demo, the stream, the service, the scoring
server); this test keeps their spelling honest.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from fashion_catalog.conf.docs import BEGIN, END, settings_markdown

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PATH_ROOT = Path(ROOT)
PACKAGE_ROOT = PATH_ROOT / "src" / "fashion_catalog"  # the one import root; the map names paths inside it
PAGES = {p.relative_to(PATH_ROOT).as_posix(): p.read_text(encoding="utf-8")
         for p in [PATH_ROOT / "README.md", *sorted((PATH_ROOT / "docs").glob("*.md"))]}
README = PAGES["README.md"]
ARCHITECTURE = PAGES["docs/architecture.md"]
CONFIGURATION = PAGES["docs/configuration.md"]
SKIP = re.compile(r"<!-- not run in tests: (.+?) -->\s*$")
README_MAX_LINES = 130  # a front page: what it is, two commands, the page, the main job, links (issue 25)


def _blocks(text: str) -> list[tuple[int, str, str | None]]:
    """(line, body, skip reason) of every ```bash block of one page."""
    out, lines = [], text.split("\n")
    i = 0
    while i < len(lines):
        if lines[i].strip() == "```bash":
            start, body = i + 1, []
            i += 1
            while lines[i].strip() != "```":
                body.append(lines[i])
                i += 1
            before = next((lines[j] for j in range(start - 2, -1, -1) if lines[j].strip()), "")
            skip = SKIP.search(before)
            out.append((start, "\n".join(body), skip.group(1) if skip else None))
        i += 1
    return out


def _commands(body: str) -> list[list[str]]:
    """Logical commands of a block: continuations joined, comments dropped, VAR="..." expanded."""
    variables: dict[str, str] = {}
    out = []
    for line in body.replace("\\\n", " ").split("\n"):
        words = shlex.split(line, comments=True)
        if not words:
            continue
        if len(words) == 1 and re.match(r"^[A-Z_]+=", words[0]):
            name, value = words[0].split("=", 1)
            variables[name] = value
            continue
        expanded = []
        for w in words:
            expanded.extend(variables[w[1:]].split() if w.startswith("$") and w[1:] in variables else [w])
        out.append(expanded)
    return out


def _strip_env(words: list[str]) -> tuple[dict[str, str], list[str]]:
    env = {}
    while words and re.match(r"^[A-Z_]+=", words[0]):
        k, v = words[0].split("=", 1)
        env[k] = v
        words = words[1:]
    return env, words


def _flags(words: list[str]) -> list[str]:
    return [w.strip("[]").split("=")[0] for w in words if w.strip("[").startswith("-") and not w.startswith("---")]


def _module_help(module: str) -> str:
    mod = importlib.import_module(module)
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as done:
        mod.main(["--help"])
    assert done.value.code == 0, f"{module} --help failed"
    return out.getvalue()


def _setting_keys() -> set[str]:
    return {m.group(1) for m in re.finditer(r"^\| `([\w.]+)` \|", settings_markdown(), re.M)}


def _make_targets() -> set[str]:
    with open(os.path.join(ROOT, "Makefile"), encoding="utf-8") as fh:
        return {m.group(1) for m in re.finditer(r"^([\w-]+):", fh.read(), re.M)}


def _cli_help(args: list[str]) -> str:
    done = subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def _vet(words: list[str], keys: set[str], targets: set[str], helps: dict) -> None:
    env, words = _strip_env(words)
    head = words[0]
    if head == "make":
        assert words[1] in targets, f"make {words[1]}: no such Makefile target"
        return
    if head == ".venv/bin/python" and words[1] == "-m":
        module = words[2]
        if module not in helps:
            helps[module] = _module_help(module)
        rest = words[3:]
        for flag in _flags(rest):
            assert re.search(rf"(^|[\s,\[]){re.escape(flag)}([\s,=\]]|$)", helps[module], re.M), \
                f"python -m {module}: the page shows {flag}, its --help does not know it"
        for i, w in enumerate(rest):
            if w == "--set":
                key = rest[i + 1].split("=", 1)[0]
                assert key in keys or key.split(".")[:2] == ["spark", "conf"], \
                    f"--set {key}: not a setting (see the generated list)"
        return
    if head in (".venv/bin/uvicorn", "uvicorn"):
        # `uvicorn pkg.module:app`: the attribute must be a module-level ASGI callable (a FastAPI app).
        module, _, attr = words[1].partition(":")
        app = getattr(importlib.import_module(module), attr or "app")
        assert callable(app), f"uvicorn {words[1]}: {attr} is not an ASGI app"
        text = _cli_help([os.path.join(os.path.dirname(sys.executable), "uvicorn"), "--help"])
        for flag in _flags(words[2:]):
            assert flag in text, f"uvicorn: unknown option {flag}"
        return
    if head == ".venv/bin/mlflow":
        # MLflow starts uvicorn from PATH: the command must put the venv's bin on it (issue: exit code 127).
        assert ".venv/bin" in env.get("PATH", ""), "mlflow models serve needs PATH=$PWD/.venv/bin:$PATH"
        text = _cli_help([sys.executable, "-m", "mlflow", *words[1:3], "--help"])
        for flag in _flags(words[3:]):
            assert flag in text, f"mlflow {' '.join(words[1:3])}: unknown option {flag}"
        return
    if head == ".venv/bin/schemathesis":
        # As the console script imports it: no working directory on sys.path (site-packages holds an
        # unrelated `tests` package, from databricks-vectorsearch), only what PYTHONPATH adds.
        child_env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {
            k: v.replace("$PWD", ROOT) for k, v in env.items() if k == "PYTHONPATH"}
        code = f"import sys; sys.path.pop(0); import {env['SCHEMATHESIS_HOOKS']}"
        probe = subprocess.run([sys.executable, "-c", code],
                               env=child_env, cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert probe.returncode == 0, f"SCHEMATHESIS_HOOKS={env['SCHEMATHESIS_HOOKS']} is not importable as the " \
                                      f"CLI imports it (set PYTHONPATH=.): {probe.stderr[-500:]}"
        text = _cli_help([os.path.join(os.path.dirname(sys.executable), "schemathesis"), words[1], "--help"])
        for flag in _flags(words[2:]):
            assert flag in text, f"schemathesis {words[1]}: unknown option {flag}"
        return
    if head == "databricks" and words[1] == "bundle":
        # The bundle's CLI: the target must be one of databricks.yml's, `run` must name a job or App of resources/.
        import yaml

        bundle = yaml.safe_load((PATH_ROOT / "databricks.yml").read_text())
        keys = {key for path in (PATH_ROOT / "resources").glob("*.yml")
                for kind, items in yaml.safe_load(path.read_text())["resources"].items() if kind in ("jobs", "apps")
                for key in items}
        assert words[2] in ("validate", "deploy", "run", "summary", "open"), f"databricks bundle {words[2]}: not vetted"
        if "-t" in words:
            assert words[words.index("-t") + 1] in bundle["targets"], f"{' '.join(words)}: no such target"
        if words[2] in ("run", "open"):
            assert words[3] in keys, f"databricks bundle {words[2]} {words[3]}: no such job or App in resources/"
        return
    raise AssertionError(f"command not vetted by tests/test_readme.py: {' '.join(words)} "
                         f"(teach the test, or mark its block <!-- not run in tests: why -->)")


def test_every_command_block_of_the_readme_and_the_docs_is_vetted_or_says_why_not():
    keys, targets, helps = _setting_keys(), _make_targets(), {}
    vetted, blocks = 0, 0
    for page, text in PAGES.items():
        for line, body, skip in _blocks(text):
            blocks += 1
            if skip:
                assert len(skip) > 15, f"{page} line {line}: say why the block is not run"
                continue
            for words in _commands(body):
                try:
                    _vet(words, keys, targets, helps)
                except AssertionError as exc:
                    raise AssertionError(f"{page} line {line}: {exc}") from None
                vetted += 1
    assert blocks >= 10 and vetted >= 30, (blocks, vetted)


def test_the_readme_is_a_front_page():
    lines = README.count("\n") + 1
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move detail to docs/ (at most {README_MAX_LINES})"
    first_block = _commands(_blocks(README)[0][1])
    assert [w[:2] for w in first_block] == [["make", "demo"], ["make", "test"]], "the two set-up commands come first"
    assert "docs/page.png" in README and (PATH_ROOT / "docs" / "page.png").is_file(), "the screenshot of the page"
    for page in ("architecture", "configuration", "search", "deploy", "operations", "benchmarks", "testing"):
        assert f"(docs/{page}.md)" in README, f"the README links docs/{page}.md"
    assert re.search(r"uvicorn fashion_catalog\.app\.main:app", README), "the serving line as FastAPI users write it"


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _broken_links(pages: dict[str, str]) -> list[str]:
    """Relative links of ``pages`` (path from the repository root -> text) whose file or heading is missing."""
    broken = []
    for page, text in pages.items():
        here = (PATH_ROOT / page).parent
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"^[a-z]+://", target) or target.startswith("mailto:"):
                continue
            path, _, anchor = target.partition("#")
            file = (here / path).resolve() if path else PATH_ROOT / page
            if not file.exists():
                broken.append(f"{page}: {target} (no such file)")
            elif anchor and file.suffix == ".md":
                headings = re.findall(r"^#+ (.+)$", file.read_text(encoding="utf-8"), re.M)
                if anchor not in {_anchor(h) for h in headings}:
                    broken.append(f"{page}: {target} (no such heading)")
    return broken


def test_every_link_between_the_pages_resolves():
    assert not _broken_links(PAGES)


def test_the_link_check_catches_a_missing_page_and_a_missing_heading():
    assert _anchor("Bad input never kills the job") == "bad-input-never-kills-the-job"
    page = "[a](docs/nope.md) [b](docs/operations.md#no-such-heading) [c](docs/operations.md#jobs) [d](https://x.y)"
    assert _broken_links({"README.md": page}) == [
        "README.md: docs/nope.md (no such file)", "README.md: docs/operations.md#no-such-heading (no such heading)"]


def test_the_vetting_catches_a_renamed_flag_a_wrong_module_and_an_unknown_key():
    keys, targets, helps = _setting_keys(), _make_targets(), {}
    with pytest.raises(AssertionError, match="--no-such-flag"):
        _vet([".venv/bin/python", "-m", "fashion_catalog.jobs.backfill", "--no-such-flag"], keys, targets, helps)
    with pytest.raises(ModuleNotFoundError):
        _vet([".venv/bin/python", "-m", "fashion_catalog.jobs.no_such_job"], keys, targets, helps)
    with pytest.raises(AssertionError, match="not a setting"):
        _vet([".venv/bin/python", "-m", "fashion_catalog.jobs.stream", "--set", "model.precisionn=bf16"], keys, targets,
             helps)
    with pytest.raises(AssertionError, match="Makefile"):
        _vet(["make", "deploy-everything"], keys, targets, helps)
    with pytest.raises(AssertionError, match="PATH"):
        _vet([".venv/bin/mlflow", "models", "serve", "-m", "models:/x@champion"], keys, targets, helps)


def test_the_settings_list_in_the_docs_is_the_generated_one():
    start, end = CONFIGURATION.index(BEGIN), CONFIGURATION.index(END) + len(END)
    assert CONFIGURATION[start:end] == settings_markdown(), \
        "run: python -m fashion_catalog.conf.docs --write docs/configuration.md"
    assert ("| `model.precision` | `fp32` \\| `bf16` \\| `int8` \\| `fp16` \\| `openvino-bf16` \\| `openvino-int8` "
            "\\| `auto` |") in CONFIGURATION


# -- the map of the code ------------------------------------------------------------------------
def _section(title: str) -> str:
    start = ARCHITECTURE.index(f"## {title}")
    end = ARCHITECTURE.find("\n## ", start + 1)
    return ARCHITECTURE[start:end if end > 0 else None]


def test_every_path_in_where_things_are_exists():
    section = _section("Where things are")
    paths = {p for p in re.findall(r"`([\w./-]+)`", section) if "/" in p and not p.startswith("/")}
    assert len(paths) > 30
    missing = sorted(p for p in paths if not (PATH_ROOT / p).exists() and not (PACKAGE_ROOT / p).exists())
    assert not missing, f"docs/architecture.md names files that do not exist: {missing}"


def test_every_python_module_is_in_the_map():
    section = _section("Where things are")
    named = set(re.findall(r"`([\w./-]+\.py)`", section))
    packages = ("conf", "schemas", "lakehouse", "catalog", "streaming", "udfs", "encoders", "search",
                "personalization", "vectorsearch", "training", "evaluation", "demo", "app", "indexes")
    modules = {str(p.relative_to(PACKAGE_ROOT)) for pkg in packages for p in (PACKAGE_ROOT / pkg).rglob("*.py")
               if p.name != "__init__.py"}
    missing = sorted(modules - named)
    assert not missing, f"modules the map in docs/architecture.md does not name: {missing}"


def test_layer_diagram_matches_the_import_linter_contract():
    tool = tomllib.loads((PATH_ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    [contract] = [c for c in tool["contracts"] if c["id"] == "layers"]
    layers = [layer.replace("fashion_catalog.", "") for layer in contract["layers"]]
    block = re.search(r"```\n(bench.*?)```", _section("Where things are"), re.S).group(1)
    diagram = [re.split(r"\s{2,}", line.strip())[0] for line in block.strip().splitlines()]
    assert diagram == layers
    for layer in layers:
        for package in layer.split(" | "):
            here = PATH_ROOT / package if package == "bench" else PACKAGE_ROOT / package
            assert (here / "__init__.py").is_file(), package
