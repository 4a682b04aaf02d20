# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test install clean

# setup.py builds the C kernel (src/genloom/nn/onerow.c): a change to either reinstalls.
$(STAMP): pyproject.toml setup.py src/genloom/nn/onerow.c
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first, pinned: the CPU wheel; a bare "torch" would pull a multi-GB CUDA build.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/genloom demo

test: $(STAMP)
	$(PY) -m pytest tests

clean:
	rm -rf $(VENV) runs
