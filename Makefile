# Two commands for a fresh machine: `make demo` and `make test`. Everything else is optional.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# Where pip finds torch 2.13.0. Empty = pip's own configuration (the CI machines hold the CPU build on local
# disk). On a CPU-only Linux machine elsewhere, point it at PyTorch's CPU wheel index, or plain PyPI gives the
# CUDA build (several GB): make test TORCH_INDEX=<cpu wheel index url>
TORCH_INDEX ?=

# make data inputs (see DatasetPrep.md)
SQUAD_CSV ?=
MODEL ?= models/llama3-2-3b-instruct
OUT ?= outputs/data
NQ_DIR ?=
LIMIT ?= -1
SPACY_MODEL ?= auto

.PHONY: help setup test demo data reproduce lint bench clean

help:
	@echo "make test       set up .venv (torch 2.13.0; TORCH_INDEX=url picks the CPU build) and run the tests"
	@echo "make demo       set up .venv and run the whole pipeline on tiny models and real data (outputs/demo)"
	@echo "make data SQUAD_CSV=f MODEL=dir OUT=dir [NQ_DIR=dir] [LIMIT=n]   curriculum pairs (DatasetPrep.md)"
	@echo "make reproduce  the study's profile on a GPU machine with the models in models/"
	@echo "make lint       ruff"
	@echo "make bench      speed/memory benchmarks against straightforward implementations"

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PIP) install -r requirements.txt
	$(PIP) install --no-deps --no-build-isolation -e .   # the scripts import aligner from here
	touch $(STAMP)

setup: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

demo: $(STAMP)
	$(PY) scripts/run_pipeline.py --profile demo --output_dir outputs/demo

data: $(STAMP)
	$(PY) scripts/make_data.py --squad_csv "$(SQUAD_CSV)" --model_path "$(MODEL)" --output_dir "$(OUT)" \
		--nq_dir "$(NQ_DIR)" --limit $(LIMIT) --spacy_model $(SPACY_MODEL)

reproduce: $(STAMP)
	$(PY) scripts/run_pipeline.py --profile study --output_dir outputs/study

lint: $(STAMP)
	$(PY) -m ruff check aligner scripts evaluation first_improvement further_improvement old_training tests benchmarks

bench: $(STAMP)
	$(PY) benchmarks/bench_train.py
	$(PY) benchmarks/bench_eval.py

clean:
	rm -rf outputs .pytest_cache
