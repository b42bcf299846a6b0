# Two commands do everything on a fresh machine: `make demo` and `make test`.
VENV ?= .venv
LLMREC := $(VENV)/bin/llmrec
PYTEST_ARGS ?=

.PHONY: setup setup-horovod demo test test-all doctor bench parity freeze clean

# The pinned stack, then Horovod built from source with our patch (each step skips itself when
# its stamp is current).
setup:
	@bash scripts/setup_env.sh
	@bash scripts/setup_horovod.sh

# Kept as a name for the Horovod half (rebuilds it when its stamp is stale); `setup` includes it.
setup-horovod: setup

doctor: setup
	$(LLMREC) doctor

demo: setup
	$(LLMREC) run configs/demo.yaml

test: setup
	$(VENV)/bin/python -m pytest -m "not slow" $(PYTEST_ARGS) tests

test-all: setup
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS) tests

bench: setup
	$(VENV)/bin/python -m pytest -m slow -s benchmarks

# RecBole's BPR and LightGCN against ours on the same splits, all scored by our evaluator
# (docs/parity.md). On demand, not in CI: RecBole goes into its own .parity-venv.
parity: setup
	@VENV=$(VENV) bash scripts/parity/run.sh

# Re-pins requirements/constraints.txt from the current environment (after changing core.txt).
freeze:
	{ echo "# Every package of the environment, pinned. Regenerate with: make freeze"; \
	  $(VENV)/bin/pip freeze --exclude-editable | grep -iv '^horovod=\|^cmake='; } > requirements/constraints.txt

clean:
	rm -rf $(VENV) build *.egg-info
