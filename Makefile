# Two commands on a fresh machine:  `make demo` (main job, local default)  and  `make test`.
# Both create .venv: `make demo` installs the runtime, `make test` the test tools too; Delta's jars come
# from Maven Central on the first Spark start (Spark's spark.jars.packages -> ~/.ivy2.5.2 cache; offline afterwards).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Two stamps: the demo needs only the runtime (requirements.txt); the tests, lint and benchmarks add the
# dev tools (requirements-dev.txt: pytest, playwright, schemathesis, locust, ...).
RUNTIME := $(VENV)/.runtime-installed
DEV := $(VENV)/.dev-installed

.PHONY: demo cluster-demo test lint bench clean browser wheel serving-env-check

$(RUNTIME): requirements.txt setup.py pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $(RUNTIME)

$(DEV): $(RUNTIME) requirements-dev.txt
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $(DEV)

demo: $(RUNTIME)
	$(PY) -m fashion_catalog.jobs.demo

# The stream on a local standalone cluster: master + 2 workers on 127.0.0.1, encoding in executor processes.
cluster-demo: $(RUNTIME)
	SPARK_LOCAL_IP=127.0.0.1 $(PY) -m fashion_catalog.jobs.cluster_demo --set storage.root=data/cluster-demo

# The registered encoder served from a clean environment built from its own requirements (slow: torch again).
serving-env-check: $(DEV)
	FASHION_SERVING_ENV_CHECK=1 PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(PY) -m pytest -q -s -m serving_env tests/test_serving_env.py

# The wheel the Databricks Asset Bundle deploys (dist/*.whl).
wheel: $(RUNTIME)
	$(PY) -m pip wheel --no-deps -q -w dist .

lint: $(DEV)
	$(PY) -m ruff check .
	$(VENV)/bin/lint-imports

# Debian's Chromium for the browser test (Playwright drives /usr/bin/chromium; no browser download).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium missing: sudo apt-get install chromium (the browser test is skipped without it)"; fi; }

# Byte-compile the project first: where PYTHONDONTWRITEBYTECODE is set (as on CI), every process the suite
# starts (jobs, Spark's Python workers) would otherwise compile the project's modules again.
test: lint browser
	$(PY) -m compileall -q src tests bench
	$(PY) -m pytest -q

bench: $(DEV)
	$(PY) -m bench.backfill_throughput

clean:
	rm -rf data spark-warehouse metastore_db derby.log .pytest_cache
