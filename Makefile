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
# make reproduce DRY_RUN=1: print every stage's command and whether it would run or be skipped, run nothing
DRY_RUN ?=

# The second, small venv of the vLLM env's transformers (no vllm, CPU torch) for `make test-vllm-env`
VLLM_VENV ?= .venv/vllm-tf
VLLM_PY := $(VLLM_VENV)/bin/python
VLLM_STAMP := $(VLLM_VENV)/.installed
VLLM_ENV_TESTS = $(shell grep -l 'mark.vllm_env' tests/test_*.py)

.PHONY: help setup test demo data reproduce reproduce-eval lint bench clean check-envs test-vllm-env

help:
	@echo "make test       set up .venv (torch 2.13.0; TORCH_INDEX=url picks the CPU build) and run the tests"
	@echo "make demo       set up .venv and run the whole pipeline on tiny models and real data (outputs/demo)"
	@echo "make setup      only set up .venv (torch, requirements.txt, the project as an editable install)"
	@echo "make data SQUAD_CSV=f MODEL=dir OUT=dir [NQ_DIR=dir] [LIMIT=n] [SPACY_MODEL=name]   curriculum pairs (DatasetPrep.md)"
	@echo "make reproduce  the study's profile on a GPU machine with the models in models/ (DRY_RUN=1: only the plan)"
	@echo "make reproduce-eval  the study's published adapters + the base on every benchmark, against its numbers"
	@echo "make check-envs      aligner_env.yml and vllm_env.yml resolve (pip --dry-run, no large downloads)"
	@echo "make test-vllm-env   the vLLM-facing tests on the vLLM env's transformers (a second small venv)"
	@echo "make lint       ruff"
	@echo "make bench      speed/memory benchmarks against straightforward implementations"
	@echo "make clean      remove outputs/ and the pytest cache"

$(STAMP): requirements.txt pyproject.toml
	$(PY) -m pip --version >/dev/null 2>&1 || $(PYTHON) -m venv --clear $(VENV)  # made anew when missing or broken
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
	$(PY) scripts/run_pipeline.py --profile study --output_dir outputs/study $(if $(DRY_RUN),--dry_run)

reproduce-eval: $(STAMP)
	$(PY) scripts/run_pipeline.py --profile study_eval --output_dir outputs/study_eval $(if $(DRY_RUN),--dry_run)

check-envs: $(STAMP)
	$(PY) scripts/check_envs.py --resolve aligner_env.yml vllm_env.yml

$(VLLM_STAMP): requirements-vllm.txt requirements.txt scripts/check_envs.py aligner/core/envs.py | $(STAMP)
	$(VLLM_PY) -m pip --version >/dev/null 2>&1 || $(PYTHON) -m venv --clear $(VLLM_VENV)
	$(PY) scripts/check_envs.py --small_venv_requirements $(VLLM_VENV)/requirements.txt
	$(VLLM_PY) -m pip install $$(grep '^torch==' $(VLLM_VENV)/requirements.txt) $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(VLLM_PY) -m pip install -r $(VLLM_VENV)/requirements.txt
	$(VLLM_PY) -m pip install --no-deps --no-build-isolation -e .
	touch $(VLLM_STAMP)

test-vllm-env: $(VLLM_STAMP)
	$(VLLM_PY) -m pytest -q -m vllm_env $(VLLM_ENV_TESTS)

lint: $(STAMP)
	$(PY) -m ruff check aligner scripts evaluation first_improvement further_improvement old_training tests benchmarks

bench: $(STAMP)
	$(PY) benchmarks/bench_train.py
	$(PY) benchmarks/bench_eval.py

clean:
	rm -rf outputs .pytest_cache
