"""The wheel and the Databricks Asset Bundle, checked offline: what `databricks bundle deploy` would ship."""

from __future__ import annotations

import configparser
import copy
import glob
import os
import re
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
import yaml

from fashion_catalog.conf import load_config, parse_override

ROOT = Path(__file__).resolve().parent.parent
ROOT_PACKAGE = "fashion_catalog"
# Top-level modules a Databricks Runtime 17.3 LTS ML cluster pre-installs (from the runtime's library list).
DBR_ML_MODULES = Path(__file__).parent / "fixtures" / "dbr_ml_top_level_modules.txt"
VAR = re.compile(r"\$\{var\.(\w+)\}")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)], check=True,
                   capture_output=True, timeout=300)
    [path] = out.glob("fashion_multimodal_catalog-*.whl")
    return path


def _entry_points(wheel: Path) -> dict[str, str]:
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if n.endswith(".dist-info/entry_points.txt"))
        parser = configparser.ConfigParser()
        parser.read_string(z.read(name).decode())
    return dict(parser["console_scripts"])


def test_wheel_carries_every_package_its_data_and_entry_points(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        metadata = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    for needed in ("conf/local.yaml", "conf/databricks.yaml", "conf/synonyms.txt", "app/static/index.html",
                   "personalization/data/personas.json", "streaming/runner.py", "encoders/pyfunc.py",
                   "udfs/encoding.py", "jobs/stream.py", "evaluation/query_set.yaml", "search/text_search.py"):
        assert f"{ROOT_PACKAGE}/{needed}" in names, needed
    assert not any(n.startswith(("tests/", "bench/")) for n in names)
    # The runtime's own Spark and Delta are never shadowed: they are extras only.
    requires = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    assert not any(("pyspark" in r or "delta-spark" in r) and "extra ==" not in r for r in requires)
    scripts = _entry_points(wheel)
    for job in ("load_catalog", "stream", "backfill", "reembed", "register_model", "create_indexes"):
        assert any(target == f"{ROOT_PACKAGE}.jobs.{job}:main" for target in scripts.values()), job


def _top_level_names(wheel: Path) -> set[str]:
    """What a wheel puts at the top of site-packages: first path parts (a dist-info folder aside)."""
    with zipfile.ZipFile(wheel) as z:
        parts = {n.split("/", 1)[0] for n in z.namelist()}
    return {p.removesuffix(".py") for p in parts if not p.endswith((".dist-info", ".data"))}


def test_wheel_installs_one_import_root_that_no_databricks_ml_runtime_package_has(wheel):
    """The wheel's only top-level name is the product's import root, and a Databricks Runtime ML cluster has no
    package of that name (mosaicml-streaming's `streaming` broke the old layout of sixteen generic names)."""
    preinstalled = {line.strip() for line in DBR_ML_MODULES.read_text().splitlines()
                    if line.strip() and not line.startswith("#")}
    assert {"streaming", "simulation", "tests", "app"} <= preinstalled
    assert _top_level_names(wheel) == {ROOT_PACKAGE}
    assert not _top_level_names(wheel) & preinstalled


def test_a_generic_name_in_the_project_venv_imports_no_project_code(tmp_path):
    """`import streaming` in the project's environment finds nothing of ours (only an unrelated package could)."""
    for name in ("streaming", "conf", "schemas", "jobs", "app", "search"):
        done = subprocess.run([sys.executable, "-c", f"import importlib.util as u; s = u.find_spec({name!r}); "
                               "print(s.origin if s else None)"], capture_output=True, text=True, cwd=tmp_path,
                              check=True)
        assert str(ROOT) not in done.stdout, (name, done.stdout)


def test_installed_wheel_runs_its_entry_point_in_a_clean_venv(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", str(wheel)],
                   check=True, capture_output=True, timeout=300)
    # Dependencies come from the project's environment (a plain path entry: its editable install is not loaded).
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    Path(site, "_project_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([str(venv / "bin" / "fashion-stream"), "--help"], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert "incremental embedder stream" in done.stdout and "--trigger" in done.stdout
    where = subprocess.run([str(python), "-c", "import fashion_catalog.conf as conf, fashion_catalog.streaming.runner; "
                            "print(conf.__file__)"],
                           capture_output=True, text=True, cwd=tmp_path, env=env, check=True).stdout
    assert where.startswith(site), f"conf imported from {where}, not from the installed wheel"


def _bundle() -> tuple[dict, dict[str, dict]]:
    root = yaml.safe_load((ROOT / "databricks.yml").read_text())
    resources: dict[str, dict] = {}
    for pattern in root["include"]:
        for path in sorted(glob.glob(str(ROOT / pattern))):
            for kind, items in yaml.safe_load(Path(path).read_text())["resources"].items():
                for key, spec in items.items():
                    assert key not in resources.get(kind, {}), f"{kind}.{key} defined twice"
                    resources.setdefault(kind, {})[key] = spec
    return root, resources


def test_bundle_resources_build_with_the_typed_bundle_classes():
    from databricks.bundles.jobs import Job
    from databricks.bundles.volumes import Volume

    root, resources = _bundle()
    assert set(root["targets"]) == {"dev", "prod"} and root["targets"]["prod"]["run_as"]
    assert set(resources["jobs"]) == {"embedder_stream", "backfill", "backfill_gpu", "reembed", "register_model",
                                      "create_indexes", "setup"}
    # Everything the bundle can declare is a resource; the rest (tables, model versions, the serving endpoint
    # naming one, the indexes over a table) is the setup job's.
    from databricks.bundles.apps import App
    from databricks.bundles.vector_search_endpoints import VectorSearchEndpoint

    assert root["bundle"]["engine"] == "direct"  # the only engine that deploys Vector Search resources
    app = App.from_dict(resources["apps"]["search"])
    assert str(app.source_code_path) == "../src" and (ROOT / "src" / "requirements.txt").is_file()
    assert str(VectorSearchEndpoint.from_dict(resources["vector_search_endpoints"]["fashion"]).name) == \
        "${var.vector_search_endpoint}"
    app_sp = "${resources.apps.search.service_principal_client_id}"
    assert {"principal": app_sp, "privileges": ["USE_SCHEMA", "SELECT", "READ_VOLUME"]} in \
        resources["schemas"]["fashion"]["grants"]
    assert {"level": "CAN_USE", "service_principal_name": app_sp} in \
        resources["vector_search_endpoints"]["fashion"]["permissions"]
    gpu = resources["jobs"]["backfill_gpu"]["job_clusters"][0]["new_cluster"]["spark_conf"]
    # Databricks preconfigures the executors' GPUs; every stage shares a node's GPU at a quarter per task (one
    # task per vCPU of a g5.xlarge), the encoding stages take it whole (tests/test_cluster.py runs these settings).
    assert "spark.executor.resource.gpu.amount" not in gpu and gpu["spark.task.resource.gpu.amount"] == "0.25"
    assert "model.encode_task_gpus=1" in \
        resources["jobs"]["backfill_gpu"]["tasks"][0]["python_wheel_task"]["parameters"]
    for key, spec in resources["jobs"].items():
        job = Job.from_dict(spec)  # a misspelt field raises here
        assert job.name and job.tasks, key
    for key, spec in resources["volumes"].items():
        assert Volume.from_dict(spec).name, key
    from databricks.bundles.registered_models import RegisteredModel
    from databricks.bundles.schemas import Schema

    Schema.from_dict(resources["schemas"]["fashion"])  # a misspelt field or privilege raises here
    RegisteredModel.from_dict(resources["registered_models"]["clip_encoder"])
    assert resources["schemas"]["fashion"]["name"] == "${var.schema}"
    # The Volumes and the model name the schema through the resource: the schema is created first.
    for spec in [*resources["volumes"].values(), resources["registered_models"]["clip_encoder"]]:
        assert spec["schema_name"] == "${resources.schemas.fashion.name}"
    # A job-level entry for the platform group would replace its top-level CAN_MANAGE (databricks/cli).
    for key, spec in resources["jobs"].items():
        groups = {p.get("group_name") for p in spec.get("permissions", [])}
        assert "${var.platform_group}" not in groups, key
    for name in {m for text in map(str, resources.values()) for m in VAR.findall(text)}:
        assert name in root["variables"], f"undeclared variable {name}"


def _with_defaults(value: str, variables: dict) -> str:
    return VAR.sub(lambda m: str(variables[m.group(1)]["default"]), value)


def test_every_wheel_task_names_a_real_entry_point_and_real_config_keys(wheel, tmp_path):
    root, resources = _bundle()
    scripts = _entry_points(wheel)
    for key, spec in resources["jobs"].items():
        for task in spec["tasks"]:
            wheel_task = task["python_wheel_task"]
            assert wheel_task["package_name"] == wheel.name.split("-")[0], key
            assert wheel_task["entry_point"] in scripts, (key, wheel_task["entry_point"])
            args = [_with_defaults(a, root["variables"]) for a in wheel_task["parameters"]]
            profile = args[args.index("--profile") + 1]
            overrides = dict(parse_override(args[i + 1]) for i, a in enumerate(args) if a == "--set")
            config = load_config(profile, overrides=overrides, base_dir=tmp_path)  # an unknown key raises
            assert config.tables.embeddings.name.endswith(".product_embeddings_multimodal"), key


def _resolve(value, variables: dict):
    """A bundle value with ${var.*} and ${workspace.current_user.short_name} substituted (as the CLI would)."""
    if isinstance(value, dict):
        return {k: _resolve(v, variables) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, variables) for v in value]
    if not isinstance(value, str):
        return value
    value = value.replace("${workspace.current_user.short_name}", "jdoe").replace("${workspace.current_user.id}",
                                                                                   "4711")
    return VAR.sub(lambda m: str(variables[m.group(1)]), value)


def _target(name: str) -> tuple[dict, dict]:
    """The variables and the jobs as target ``name`` deploys them: its variable values and resource overrides."""
    root, resources = _bundle()
    variables = {k: v.get("default") for k, v in root["variables"].items()}
    target = root["targets"][name]
    variables.update({k: _resolve(v, variables) for k, v in target.get("variables", {}).items()})
    jobs = copy.deepcopy(resources["jobs"])
    for key, override in target.get("resources", {}).get("jobs", {}).items():
        _merge(jobs[key], override)
    return variables, _resolve(jobs, variables)


def _merge(base: dict, override: dict) -> None:
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


def _task_config(job: dict, tmp_path):
    task = job["tasks"][0]
    args = task["python_wheel_task"]["parameters"]
    overrides = dict(parse_override(args[i + 1]) for i, a in enumerate(args) if a == "--set")
    return load_config(args[args.index("--profile") + 1], overrides=overrides, base_dir=tmp_path)


def test_dev_and_prod_are_isolated_and_only_prod_runs_the_stream(tmp_path):
    dev_vars, dev = _target("dev")
    prod_vars, prod = _target("prod")
    assert (dev_vars["schema"], prod_vars["schema"]) == ("fashion_jdoe", "fashion_demo")
    dev_config, prod_config = _task_config(dev["embedder_stream"], tmp_path), _task_config(prod["embedder_stream"],
                                                                                           tmp_path)
    # Development mode would prefix the schema (dev_jdoe_); the bundle skips that, so ${var.schema} is its name.
    assert _bundle()[0]["experimental"]["skip_name_prefix_for_schema"] is True
    assert (dev_vars["app_name"], dev_vars["vector_search_endpoint"]) == ("fashion-4711", "fashion_vs_jdoe")
    assert (prod_vars["app_name"], prod_vars["vector_search_endpoint"]) == ("fashion-search", "fashion_vector_search")
    assert dev_config.stream.checkpoint == "/Volumes/main/fashion_jdoe/embedder/checkpoints/embedder"
    assert prod_config.stream.checkpoint == "/Volumes/main/fashion_demo/embedder/checkpoints/embedder"
    assert (str(dev_config.tables.products), str(prod_config.tables.products)) == (
        "main.fashion_jdoe.products", "main.fashion_demo.products")
    # Development mode pauses a continuous job only when its pause_status is empty (databricks/cli#885).
    assert dev["embedder_stream"]["continuous"].get("pause_status") is None
    assert prod["embedder_stream"]["continuous"]["pause_status"] == "UNPAUSED"
    # Every job names the pair once: no table, Volume or checkpoint path of its own.
    for key, job in prod.items():
        args = job["tasks"][0]["python_wheel_task"]["parameters"]
        assert {"namespace.catalog=main", "namespace.schema=fashion_demo"} <= set(args), key
        assert not [a for a in args if a.startswith(("tables.", "stream.checkpoint", "storage.root"))], key


# Entry points that run the Embedder, which syncs TRIGGERED indexes after its writes.
EMBEDDER_ENTRY_POINTS = {"fashion-stream", "fashion-backfill", "fashion-reembed", "fashion-setup"}


def test_every_job_that_syncs_indexes_installs_the_search_client(tmp_path):
    _, jobs = _target("prod")
    syncing = []
    for key, job in jobs.items():
        task = job["tasks"][0]
        config = _task_config(job, tmp_path)
        vs = config.vector_search
        if task["python_wheel_task"]["entry_point"] in EMBEDDER_ENTRY_POINTS and vs.sync_from_stream \
                and vs.pipeline_type == "TRIGGERED":
            syncing.append(key)
            packages = [lib["pypi"]["package"] for lib in task.get("libraries", []) if "pypi" in lib]
            assert any(p.startswith(("databricks-ai-search", "databricks-vectorsearch")) for p in packages), key
    assert sorted(syncing) == ["backfill", "backfill_gpu", "embedder_stream", "reembed", "setup"]


# vCPUs of the CPU node types the bundle names (AWS docs; the Azure/GCP equivalents in databricks.yml match).
NODE_VCPUS = {"i3.xlarge": 4}


def test_cpu_jobs_do_not_oversubscribe_their_nodes(tmp_path):
    _, jobs = _target("prod")
    for key, job in jobs.items():
        for cluster in job.get("job_clusters", []):
            spec = cluster["new_cluster"]
            if "gpu" in spec["spark_version"]:
                continue
            cores = NODE_VCPUS[spec["node_type_id"]]
            threads = int(spec["spark_env_vars"]["OMP_NUM_THREADS"])
            # Spark runs one task per core: cores tasks at once, each with `threads` torch threads.
            assert threads * cores <= cores, (key, threads)
            assert _task_config(job, tmp_path).model.torch_threads * cores <= cores, key


# What the App must never install: Spark, the model runtimes, the local index.
APP_FORBIDDEN = {"pyspark", "delta-spark", "torch", "transformers", "openvino", "nncf", "onnx", "onnxruntime",
                 "faiss-cpu", "deltalake"}
# The modules the service imports on the databricks backend (app.services builds it from these).
APP_MODULES = ["fashion_catalog.app.main", "fashion_catalog.app.server", "fashion_catalog.app.services",
               "fashion_catalog.indexes.databricks", "fashion_catalog.indexes.workspace",
               "fashion_catalog.encoders.endpoint", "fashion_catalog.encoders.factory"]


def _requirement_closure(lines: list[str]) -> set[str]:
    """The distributions ``lines`` install: each requirement and, recursively, what it requires (no extras)."""
    from importlib.metadata import PackageNotFoundError, distribution

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    seen: set[str] = set()
    todo = [Requirement(line) for line in lines]
    while todo:
        req = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        name = canonicalize_name(req.name)
        if name in seen:
            continue
        seen.add(name)
        try:
            todo.extend(Requirement(r) for r in distribution(name).requires or [])
        except PackageNotFoundError:
            continue
    return seen


def test_the_app_requirements_import_the_service_without_spark_or_torch():
    """The service's imports resolve with only src/requirements.txt (and what it requires) importable."""
    from packaging.utils import canonicalize_name

    lines = [ln.split("#")[0].strip() for ln in (ROOT / "src" / "requirements.txt").read_text().splitlines()]
    lines = [ln for ln in lines if ln]
    allowed = _requirement_closure(lines)
    assert not allowed & APP_FORBIDDEN, allowed & APP_FORBIDDEN
    # The same versions as the tested environment's pins.
    pins = dict(ln.split("==") for ln in (ROOT / "requirements.txt").read_text().splitlines() if "==" in ln)
    for line in lines:
        name, version = line.split("==")
        assert canonicalize_name(name) in {canonicalize_name(p) for p in pins} | {"databricks-ai-search"}, name
        assert pins.get(name, version) == version, line
    script = f"""
import importlib, importlib.abc, importlib.metadata, sys
from packaging.utils import canonicalize_name
ALLOWED = {sorted(allowed | {"fashion-multimodal-catalog"})!r}
DISTS = importlib.metadata.packages_distributions()
class OnlyTheAppRequirements(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        dists = DISTS.get(name.split(".")[0], [])
        if dists and not any(canonicalize_name(d) in ALLOWED for d in dists):
            raise ImportError(f"{{name}} is not in the App's requirements")
sys.meta_path.insert(0, OnlyTheAppRequirements())
for module in {APP_MODULES!r}:
    importlib.import_module(module)
from fashion_catalog.vectorsearch.client import client_class
print(client_class().__name__, "pyspark" in sys.modules, "torch" in sys.modules)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["AISearchClient", "False", "False"]
