# dimctl — `make demo` runs DIM(L) on the built-in digits end to end; `make test` runs the tests;
# `make docs` builds the documentation site into site/.
# Everything installs into .venv from nothing (`make install`), so all three work from a fresh clone.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# Debian's tcmalloc (apt-get install libtcmalloc-minimal4) speeds up eager PyTorch on the CPU
# (benchmarks/pretrain_throughput.py measures it); used whenever it is installed.
TCMALLOC := $(firstword $(wildcard /usr/lib/*/libtcmalloc_minimal.so.4))
DIMCTL := $(if $(TCMALLOC),LD_PRELOAD=$(TCMALLOC) )$(VENV)/bin/dimctl
DEMO   := runs/demo
# Small settings that fit a 2-core CPU in a few minutes (the paper's heads are 2048 wide).
# --epochs stays out of DEMO_FLAGS: the random encoder takes --epochs 0, and no command gets a flag twice.
DEMO_FLAGS ?= --dataset digits --mi-units 256 --seed 0
DEMO_EPOCHS ?= 20

.PHONY: install demo test docs bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --upgrade pip
	$(VENV)/bin/pip install -e '.[test]'
	touch $@

# The docs extra (MkDocs, Material, mkdocstrings) on top of the install; its own stamp, so a clone
# that only runs the tests never installs it.
$(VENV)/.installed-docs: $(VENV)/.installed pyproject.toml
	$(VENV)/bin/pip install -e '.[test,docs]'
	touch $@

demo: install
	$(DIMCTL) pretrain $(DEMO_FLAGS) --epochs $(DEMO_EPOCHS) --preset dim-l --out $(DEMO)/dim-l --force
	$(DIMCTL) pretrain $(DEMO_FLAGS) --epochs 0 --out $(DEMO)/random --force
	$(DIMCTL) extract $(DEMO)/dim-l/encoder.safetensors --layer conv,fc,y,pixels -o $(DEMO)/dim-l.h5 --force
	$(DIMCTL) extract $(DEMO)/random/encoder.safetensors --layer conv,fc,y -o $(DEMO)/random.h5 --force
	$(DIMCTL) probe $(DEMO)/dim-l.h5 $(DEMO)/random.h5 --classifier svm,mlp

test: install
	$(PY) -m pytest -q

# --strict: a broken link, a page missing from the nav or a bad option marker fails the build.
# The command pages' option tables are generated from the CLI by docs/hooks.py as it builds.
docs: $(VENV)/.installed-docs
	$(VENV)/bin/mkdocs build --strict --site-dir site

bench: install
	$(PY) benchmarks/pretrain_throughput.py

clean:
	rm -rf runs site .pytest_cache
