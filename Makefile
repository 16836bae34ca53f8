# One-command set-up: every target creates/uses the local virtualenv.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
# Offline raw data beside the checkout, when present (docs/data.md).
SHARED_DATA := $(abspath ../shared/data)
export TF_DISCRETE_MANUAL_DIR ?= $(if $(wildcard $(SHARED_DATA)),$(SHARED_DATA),)
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: venv demo layers-demo benchmark study report test test-all mutants clean

$(BIN)/.installed: setup.py
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found; set PYTHON=..."; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $@

venv: $(BIN)/.installed

# The main job: the official DisARM command (nonlinear DisARM VAE on
# dynamically binarized MNIST), shortened to DEMO_STEPS steps; outputs in
# runs/demo (metrics.jsonl, summary.json, curves.png, checkpoints).
DEMO_STEPS ?= 5000
DEMO_EVAL_EVERY ?= 500
demo: venv
	$(BIN)/python -m experiments.bernoulli_vae --dataset=dynamic_mnist \
	  --grad_type=disarm --encoder_type=nonlinear --demean_input \
	  --initialize_with_bias --num_steps=$(DEMO_STEPS) \
	  --eval_every=$(DEMO_EVAL_EVERY) --log_every=$(DEMO_EVAL_EVERY) \
	  --logdir=runs/demo

# A one-minute VAE built from the Keras layers, trained with model.fit.
layers-demo: venv
	$(BIN)/python -m experiments.demo

# docs/performance.md's speed table: every estimator's training step vs the bare
# forward+backward pass, one subprocess per case (about 20 minutes here).
benchmark: venv
	$(BIN)/python -m experiments.benchmark --json=runs/benchmark.json

# The study behind docs/results.md (hours; resumable: rerun to go on), and
# the report alone from whatever runs exist.
study: venv
	$(BIN)/python -m experiments.study

report: venv
	$(BIN)/python -m experiments.study --report_only

# The default test suite (long studies are marked `slow` and run with test-all),
# one pytest process per part: a single process that compiles every XLA
# program of the suite grew large enough to crash TensorFlow once. Every part
# runs; the target fails if any did.
TEST_PARTS = tests/experiments tests/tf_discrete/bernoulli \
	tests/tf_discrete/categorical "tests/tf_discrete/test_*.py tests/test_*.py"
run_parts = status=0; for part in $(TEST_PARTS); do \
	  echo "== $$part"; $(BIN)/python -m pytest -q $(1) $$part || status=1; \
	done; exit $$status

test: venv
	@$(call run_parts,-m "not slow")

test-all: venv
	@$(call run_parts,)

# The mutation check of the suite: known bugs applied one at a time to a
# scratch copy; every one must make its tests fail (docs/testing.md).
mutants: venv
	$(BIN)/python -m tests.mutants

clean:
	rm -rf $(VENV) *.egg-info
