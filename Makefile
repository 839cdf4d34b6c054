# The two set-up commands of the README: `make demo` and `make test`. Each installs what it needs into .venv.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch from this machine's wheel cache; override TORCH on machines with another torch build in mind
TORCH  ?= torch==2.14.1 torchvision==0.29.1
STAMP  := $(VENV)/.installed

.PHONY: install demo test lint bench bench-gpu quality clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check $(TORCH)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/hood demo

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check hood tests bench

bench: install
	$(BIN)/python bench/run_cpu.py

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
