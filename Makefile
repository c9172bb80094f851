# sargen: `make demo` runs the main jobs on example data, `make test` runs lint and the test suite.
# Both create .venv at the repository root and install the requirements first.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
DEMO_DATA := datasets/x2ka
# Small sizes so the demo ends in a few minutes on two CPU cores.
GATYS_DEMO := --dataroot $(DEMO_DATA) --name x2ka_demo --vgg vgg19 --load_size 128 --crop_size 128 --gpu_ids -1

.PHONY: demo test lint venv clean-demo

venv: $(INSTALLED)

$(INSTALLED): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip "setuptools<81" wheel
	$(PY) -m pip install --quiet --no-build-isolation -r requirements.txt -r requirements-dev.txt
	touch $(INSTALLED)

demo: $(INSTALLED)
	$(PY) datasets/make_dataset.py x2ka
	@weights=$$($(PY) -c "from models.vgg import imagenet_cache_path as p; print('imagenet' if p('vgg19').is_file() else 'random')"); \
	if [ "$$weights" = random ]; then echo "ImageNet VGG19 weights not found in the torch cache: the demo uses --vgg_weights random (see README)"; fi; \
	set -e; \
	$(PY) train.py --model gatys $(GATYS_DEMO) --vgg_weights $$weights --num_threads 0; \
	$(PY) test.py --model gatys $(GATYS_DEMO) --vgg_weights $$weights --num_test 4 --batch_size 2 --num_threads 0
	@echo "Cross-band results: results/x2ka_demo/test_latest/index.html"

test: $(INSTALLED)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest

lint: $(INSTALLED)
	$(VENV)/bin/ruff check .
