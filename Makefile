# Two commands on a fresh clone:  `make demo`  (set-up + main job)  and  `make test`.
# The environment is a venv in .venv, made once and remade when pyproject.toml changes.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch first, on its own: 2.13.0 is a CPU wheel on the project's machines, which serve one locally. From PyPI
# alone it is a multi-GB CUDA build on Linux: elsewhere use PyTorch's CPU index,
#   make TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu" demo
# On a GPU machine: `make TORCH=torch demo`.
TORCH  ?= torch==2.13.0
# controlnet_aux without its dependencies: they pull torchvision and timm, which means a CUDA
# torch here, and only its Canny detector is used offline (README, "Installing controlnet_aux").
CONTROLNET_AUX ?= controlnet_aux==0.0.10
# open-clip-torch, also without dependencies: only its CLIP byte-pair merges are read, by the
# test that rehearses the real SD1.5 hub cache offline (tests/hub_cache.py).
OPEN_CLIP ?= open-clip-torch==3.3.0
PYTEST_ARGS ?=

.PHONY: setup demo test test-integration test-slow gpu-check wheel wheelhouse student readme-images docs clean-venv

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check $(TORCH)
	# Earlier versions installed this project under the distribution name `workbench`; drop it.
	$(BIN)/python -m pip uninstall --quiet --yes workbench 2>/dev/null || true
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev,mlflow,aux]'
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps $(CONTROLNET_AUX) $(OPEN_CLIP)
	touch $@

demo: setup
	$(BIN)/python -m workbench demo

test: setup
	$(BIN)/python -m pytest -m "not slow and not gpu and not integration" $(PYTEST_ARGS)

# The notebooks end to end, a benchmark's every path, JupyterLab by clicks and the multi-process fault tests: CI runs
# them after `make test`.
test-integration: setup
	$(BIN)/python -m pytest -m "integration and not slow and not gpu" $(PYTEST_ARGS)

test-slow: setup
	$(BIN)/python -m pytest -m "slow" $(PYTEST_ARGS)

# Everything that needs a CUDA device, in under 8 minutes; on a CPU machine it says so and exits 0.
# On a GPU machine build the venv with the CUDA torch: `make TORCH=torch gpu-check`.
gpu-check: setup
	$(BIN)/python benchmarks/gpu_check.py

# Student copies of the notebooks, without the cells tagged `solution`: outputs/student/*.ipynb
student: setup
	$(BIN)/python -m workbench.teaching.student notebooks outputs/student

# An offline classroom: every wheel a student installs, in wheelhouse/py<version>/, for Linux x86-64 on
# Python 3.11 and 3.12 (docs/workshop.md, "A classroom without Wi-Fi"). For macOS or Windows run it there
# with WHEEL_PLATFORM= (empty: this machine's) and WHEEL_INDEX= (their PyPI torch is the CPU build).
# Each folder is then checked: an offline install must resolve from it alone, or the target fails naming
# what is missing. WHEEL_INDEX= on Linux takes PyPI's torch, a CUDA build whose CUDA wheels add gigabytes.
WHEEL_PYTHONS  ?= 3.11.9 3.12.8  # full versions: some pins require e.g. Python >= 3.11.5
WHEEL_PLATFORM ?= manylinux_2_28_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64
WHEEL_INDEX    ?= https://download.pytorch.org/whl/cpu  # a CPU torch, about 200 MB
WHEEL_EXTRA    ?= setuptools==84.2.1  # torch needs it at run time; a fresh venv may not have it
WHEEL_TARGET    = --only-binary=:all: --python-version $$py $(foreach p,$(WHEEL_PLATFORM),--platform $(p))
wheelhouse: wheel
	for py in $(WHEEL_PYTHONS); do \
	  dest=wheelhouse/py$${py%.*}; \
	  $(BIN)/python -m pip download --quiet --disable-pip-version-check --dest $$dest --no-deps $(WHEEL_TARGET) \
	    $(if $(WHEEL_INDEX),--extra-index-url $(WHEEL_INDEX)) \
	    -r constraints.txt $(TORCH) $(CONTROLNET_AUX) $(OPEN_CLIP) $(WHEEL_EXTRA) || exit 1; \
	  cp dist/controlnet_lora_workbench-*.whl $$dest/; \
	  PIP_CONFIG_FILE=/dev/null $(BIN)/python -m pip install --dry-run --quiet --disable-pip-version-check \
	    --ignore-installed --no-index --find-links $$dest --target $$dest/.dry-run $(WHEEL_TARGET) \
	    -c constraints.txt $(TORCH) controlnet-lora-workbench \
	    || { echo "$$dest is incomplete: an offline install would fail as above (WHEEL_INDEX: '$(WHEEL_INDEX)')"; exit 1; }; \
	  echo "$$dest: complete, $$(ls $$dest | wc -l) wheels, $$(du -sh $$dest | cut -f1)"; \
	done
	@echo "wheelhouse/: install offline with  pip install --no-index --find-links wheelhouse/py<version> controlnet-lora-workbench"

# A wheel for the plain-pip route (README, "Without make"): dist/controlnet_lora_workbench-*.whl
wheel: setup
	$(BIN)/python -m pip wheel --no-deps --no-build-isolation -w dist .

# The README's pictures: the demo grid, and each notebook's main figure as the test run drew it.
# Executed copies of every notebook (full length) as HTML in docs/notebooks/, and their figures.
# Notebook 02's rank study reuses the fp32 adapters `python benchmarks/rank_study.py --steps 1200 --prior 256
# --unconditional 128 --scenes 12` cached in runs/lora-cache (the numbers RESULTS.md quotes); without them
# it copies the package's fp16 copies (workbench/assets/lora-study.zip) there instead of training 35 minutes.
docs: setup
	WORKBENCH_LORA_CACHE=$(CURDIR)/runs/lora-cache WORKBENCH_NOTEBOOK_HTML=docs/notebooks $(BIN)/python -m pytest tests/test_notebooks.py -q -m "slow or not slow" \
		-k "runs_on_the_toy_model or full_length"

readme-images: setup
	$(BIN)/python -m workbench demo
	$(BIN)/python -m pytest tests/test_notebooks.py -q -m "slow or not slow"
	mkdir -p docs
	cp outputs/demo/grid.png docs/demo-grid.png
	for nb in outputs/notebooks/*.png; do cp "$$nb" docs/; done

clean-venv:
	rm -rf $(VENV)
