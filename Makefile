# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8000
DEMO := demo
# The embedded default demo: a synthetic catalog with planted preferences (see README).
DEMO_SYNTH := --seed 7 --users 1500 --items 3000 --mean-interactions 20
DEMO_TRAIN := --set epochs=20

.PHONY: venv demo demo-build serve test clean

$(VENV)/.installed: requirements.txt requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt -c requirements.lock
	touch $@

venv: $(VENV)/.installed

# Build once (idempotent steps), then serve on http://127.0.0.1:$(PORT).
demo: demo-build serve

demo-build: venv
	$(PY) -m offline synth $(DEMO_SYNTH) --out $(DEMO)/data
	$(PY) -m offline pipeline --dataset synthetic --source $(DEMO)/data --workdir $(DEMO)/work $(DEMO_TRAIN)

serve: venv
	@echo "Open http://127.0.0.1:$(PORT)/ (page), http://127.0.0.1:$(PORT)/docs (API)"
	@echo "  e.g. http://127.0.0.1:$(PORT)/recommend?user_id=$$(head -1 $(DEMO)/work/runs/vecf/users.txt)&k=10"
	$(PY) -m service --model $(DEMO)/work/export --port $(PORT)

test: venv
	$(PY) -m pytest -q

clean:
	rm -rf $(DEMO)
