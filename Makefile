# Two commands on a fresh machine: `make demo` (the main job) and `make test`.
# Both create .venv at the repo root and install what they need.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow bench bench-gpu clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[dev]'
	# Upstream model code used as test references only; their own dependency lists are heavy
	# (funasr, modelscope, s3prl, whisper), and the tests import only their model modules.
	$(PY) -m pip install --no-deps speakerlab==0.0.6 wespeaker-unofficial==0.0.2
	touch $(STAMP)

demo: $(STAMP)
	$(PY) recipes/mini/run.py

test: $(STAMP)
	$(PY) -m pytest

test-slow: $(STAMP)
	$(PY) -m pytest -m slow

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done

bench-gpu: $(STAMP)
	$(PY) benchmarks/bench_gpu.py

clean:
	rm -rf $(VENV) build *.egg-info
