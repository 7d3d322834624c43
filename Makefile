# `make test` and `make run` do all their set-up themselves on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.graphc-installed

.PHONY: test run setup oracles graphviz openmp lint docs bench clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test,plot,distributed]"
	@touch $@

# The external oracles the tests compare against: CPU PyTorch (torch==2.13.0, a CPU build this machine image keeps
# on disk for pip), onnxruntime, onnxscript (PyTorch's dynamo exporter) and torchvision. PyPI's torchvision pins a
# CUDA torch, so it is installed without its dependencies (graphc.bench.zoo.import_torchvision copes with its
# missing compiled ops). Without these the oracle tests skip; `make test` installs them so CI runs them.
ORACLE_STAMP := $(VENV)/.graphc-oracles
$(ORACLE_STAMP): $(STAMP)
	$(PY) -m pip install -q -e ".[test,plot,oracle]"
	$(PY) -m pip install -q --no-deps "torchvision==0.28.0"
	@touch $@

oracles: $(ORACLE_STAMP)

setup: $(STAMP) graphviz openmp

# Rendering to .svg/.png needs Graphviz's `dot`; everything else works without it.
graphviz:
	@if ! command -v dot >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq graphviz >/dev/null) \
	      || echo "could not install graphviz; .dot files still work (install it with: apt-get install graphviz)"; \
	  else echo "graphviz's 'dot' is missing: install it (e.g. 'sudo apt-get install graphviz') to render .svg/.png"; fi; \
	fi

# Native programs run on every core through GCC's OpenMP runtime (libgomp.so.1); without it they run on one thread.
openmp:
	@if ! ldconfig -p 2>/dev/null | grep -q 'libgomp\.so\.1'; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libgomp1 >/dev/null) \
	      || echo "could not install libgomp1; native programs run on one thread (install it: apt-get install libgomp1)"; \
	  else echo "libgomp.so.1 is missing: native programs run on one thread (install it, e.g. 'sudo apt-get install libgomp1')"; fi; \
	fi

lint: $(STAMP)
	$(PY) -m ruff check .

test: setup oracles
	$(PY) -m ruff check .
	$(PY) -m pytest

# The demo: the apple-purchase graph, then a CNN trained on the 8x8 digits with the LLVM backend (test accuracy,
# one compiled training step checked against the interpreter, graph renderings and learning curves written to out/;
# the curves need matplotlib, the `plot` extra the set-up installs).
run: setup
	$(PY) examples/apple.py out/apple.svg
	$(PY) examples/digits_cnn.py --out out

# The README's pictures, committed as small SVGs under docs/ (one command per picture; needs Graphviz's `dot`).
docs: setup
	$(PY) examples/apple.py --textbook docs/apple_textbook.svg
	$(PY) examples/apple_orange.py --textbook docs/apple_orange_textbook.svg
	$(PY) examples/chain_rule.py docs/chain_rule_textbook.svg
	$(PY) examples/pictures.py docs  # digits_cnn_layers.svg, mlp_memory.svg, mlp_kernels.svg

bench: setup
	$(VENV)/bin/graphc bench

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache out
