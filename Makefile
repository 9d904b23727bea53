# Two entry points on a fresh machine: `make demo` and `make test`.
# Both create .venv with the exact torch/torchvision of constraints.txt.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: setup demo test lint bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt -e '.[test]'
	# torchattacks (the peer the kernels are cross-checked against) pins an old
	# `requests`; its real needs (torch, scipy, tqdm) come with the test extras.
	$(BIN)/pip install -q --no-deps torchattacks==3.5.1
	touch $@

demo: setup
	$(BIN)/sweep run sweep/demo/digits.yaml

test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

bench: setup
	$(BIN)/python bench/kernels.py

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
