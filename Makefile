# Two commands on a fresh machine: `make demo` (install + run the quick recipe on real data)
# and `make test` (install + run the test suite). Both create .venv on first use.
# STACK=current (default: transformers 5.x, the newest releases that work together) or
# STACK=legacy (transformers 4.57 with optimum-onnx) picks the constraints file and the venv.
PYTHON ?= python3
STACK ?= current
ifeq ($(STACK),legacy)
VENV := .venv-legacy
EXTRAS := onnx,bnb,lowrank,report,test,optimum
else ifeq ($(STACK),current)
VENV := .venv
EXTRAS := onnx,bnb,lowrank,report,test
else
$(error STACK must be current or legacy, not '$(STACK)')
endif
CONSTRAINTS := constraints/$(STACK).txt
BIN := $(VENV)/bin
# The offline GLUE folder when it exists; otherwise data comes from the Hub.
DATA_DIR ?= $(wildcard $(abspath ../shared/data))
# torch first: an unconstrained resolve pulls a multi-GB CUDA build (shared/PLATFORM.md);
# 2.13.0 is the CPU wheel on this machine's disk.
TORCH := torch==2.13.0

.PHONY: demo test install full glue clean

$(BIN)/distill: pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -c $(CONSTRAINTS) -e ".[$(EXTRAS)]"
	touch $(BIN)/distill

install: $(BIN)/distill

demo: install
	DISTILL_DATA_DIR=$(DATA_DIR) $(BIN)/distill run recipes/quickstart.yaml

# lint-imports first: the layer contract in pyproject.toml ([tool.importlinter]) fails the run on an
# import that climbs a layer or closes a circle.
test: install
	$(BIN)/lint-imports
	DISTILL_TEST_DATA_DIR=$(DATA_DIR) $(BIN)/python -m pytest -q $(PYTEST_ARGS)

# The reproduction run (about 1 h 40 min on 2 AVX-512 BF16 CPU cores, longer on AVX2), logged to runs/sst2_full.log.
full: install
	mkdir -p runs && DISTILL_DATA_DIR=$(DATA_DIR) $(BIN)/distill run recipes/sst2_minilm_l6_to_l3.yaml 2>&1 | tee runs/sst2_full.log

# Every local GLUE task's recipe in turn (recipes/glue/; QNLI needs the Hub for its train split).
# Finished stages are reused, so an interrupted `make glue` continues where it stopped.
GLUE_TASKS ?= wnli rte mrpc stsb cola sst2
glue: install
	for task in $(GLUE_TASKS); do DISTILL_DATA_DIR=$(DATA_DIR) $(BIN)/distill run recipes/glue/$$task.yaml || exit 1; done

clean:
	rm -rf .venv .venv-legacy runs .pytest_cache
