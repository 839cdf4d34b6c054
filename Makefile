# Set-up and checks: `make demo`, `make test`, `make lint`, `make bench`. Each installs what it needs into .venv.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch from this machine's wheel cache; override TORCH on machines with another torch build in mind
TORCH  ?= torch==2.14.1 torchvision==0.29.1
STAMP  := $(VENV)/.installed

.PHONY: install demo test lint bench clean

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

# ruff, the layering of hood's imports, then the check that product files (hood, configs, docs, README, Makefile)
# point nowhere outside it
lint: install
	$(BIN)/ruff check hood tests bench research
	$(BIN)/python .ci/check_layers.py
	sh .ci/check_refs.sh

bench: install
	$(BIN)/python bench/run_cpu.py

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
