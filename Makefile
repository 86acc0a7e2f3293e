# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8000
DEMO := demo
# The embedded default demo: a synthetic shop with one planted (part, attribute) preference per user
# (see README). Its seed was never used while choosing the training defaults.
DEMO_SYNTH := --seed 2026 --users 1000 --items 2000 --mean-interactions 30 --max-preferences 1 \
	--p-pref 0.8 --p-pop 0.1 --popularity-exponent 0.5
DEMO_TRAIN :=

.PHONY: venv venv-demo lock demo demo-build serve lint test bench bench-quality bench-features bench-serve bench-train screenshots clean

# pyproject.toml's extras at requirements.lock's versions, the project itself editable: the demo takes
# `train` (training, export and the gateway; no torch, JAX or Cornac), tests and benchmarks `test` (all).
$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.installed-%: pyproject.toml requirements.lock | $(VENV)/bin/python
	$(PY) -m pip install --quiet --no-cache-dir -c requirements.lock -e ".[$*]"
	touch $@

venv-demo: $(VENV)/.installed-train
venv: $(VENV)/.installed-test

# requirements.lock from pyproject.toml (every extra), keeping the versions it holds where they still fit.
lock: venv
	$(PY) -m pip install --quiet uv==0.13.9
	$(VENV)/bin/uv pip compile pyproject.toml --all-extras --python-version 3.11 --quiet -o requirements.lock

# Build once (idempotent steps), then serve on http://127.0.0.1:$(PORT).
demo: demo-build serve

demo-build: venv-demo
	$(PY) -m offline synth $(DEMO_SYNTH) --out $(DEMO)/data
	$(PY) -m offline pipeline --dataset synthetic --source $(DEMO)/data --workdir $(DEMO)/work $(DEMO_TRAIN)
	$(PY) -m bench.docs --stamp demo

serve: venv-demo
	@echo "Open http://127.0.0.1:$(PORT)/ (page), http://127.0.0.1:$(PORT)/docs (API)"
	@echo "  e.g. http://127.0.0.1:$(PORT)/recommend?user_id=$$(head -1 $(DEMO)/work/runs/vecf/users.txt)&k=10"
	$(PY) -m service --model $(DEMO)/work/export --port $(PORT)

# Lint and format check; `ruff format .` and `ruff check --fix .` repair most of what it reports.
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: venv
	$(PY) -m pytest -q

# Benchmarks write JSON + Markdown (and plots) into bench/results/.
bench: bench-features bench-quality bench-serve bench-train

# VECF vs the baselines on the real H&M sample in ../shared/data/hm (about an hour on 2 cores the
# first time, most of it feature extraction; reruns reuse bench/work/hm/features: 22 minutes).
bench-quality: venv
	$(PY) -m bench.quality

bench-features: venv
	$(PY) -m bench.features

# The gateway under load (in-process, REST, gRPC; H&M size and 200k items), two-stage recall, faults.
bench-serve: venv
	$(PY) -m bench.serve

# VECF training pairs/s, feature table inside the model vs features gathered on the host per batch.
# On a GPU: KERAS_BACKEND=jax (TensorFlow here is CPU-only). Shapes: the H&M sample's. A CPU takes ~5 s
# a step of 4,096 pairs, so the default run is short; on a GPU pass BENCH_TRAIN_ARGS= for 32-step epochs.
BENCH_TRAIN_ARGS ?= --steps 8 --epochs 2
bench-train: venv
	$(PY) -m bench.train $(BENCH_TRAIN_ARGS)

# docs/page.png (the README's screenshot): the page test in chromium against the demo model that
# `make demo-build` left (run that first; it retrains, so it is not a dependency here).
screenshots: venv
	@test -d $(DEMO)/work/export || { echo "no $(DEMO)/work/export: run make demo-build first"; exit 2; }
	SCREENSHOTS=docs PAGE_MODEL_DIR=$(DEMO)/work/export $(PY) -m pytest -q tests/service/test_page_browser.py

clean:
	rm -rf $(DEMO)
