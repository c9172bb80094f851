# sargen: `make demo` runs the main jobs on example data, `make test` runs lint and the test suite.
# Both create .venv at the repository root and install the requirements first.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
CONSTRAINTS := constraints.txt
LOCK_VENV := .venv-lock
# Small sizes and few steps so that every demo target together takes under 4 minutes on two CPU cores.
GATYS_DEMO := --dataroot datasets/x2ka --name x2ka_demo --vgg vgg19 --load_size 128 --crop_size 128 --gpu_ids -1 \
	--num_threads 0
EO2SAR_DEMO := --dataroot datasets/eo2sar --name eo2sar_demo --gpu_ids -1 --num_threads 0
SEN12MS_DEMO := --dataroot datasets/sen12ms --dataset_mode sen12ms --name sen12ms_demo --gpu_ids -1 --num_threads 0
PIX2PIX_DEMO := --dataroot datasets/sen12ms --dataset_mode sen12ms --name pix2pix_demo --gpu_ids -1 --num_threads 0
# imagenet when torchvision's cache has the VGG file, else the seeded random weights (said once).
WEIGHTS_FOR = $$($(PY) -c "from models.vgg import imagenet_cache_path as p; print('imagenet' if p('$(1)').is_file() else 'random')")

DEMO_TARGETS := demo-gatys demo-visualization demo-ugatit demo-sen12ms demo-pix2pix

.PHONY: demo $(DEMO_TARGETS) test test-avx2 lint venv lock gpu-check

venv: $(INSTALLED)

# Every package is installed at the version constraints.txt pins (the versions CI passes with); `make lock`
# refreshes the pins from what pip resolves today, then `make test` installs and checks them.
$(INSTALLED): requirements.txt requirements-dev.txt $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade -c $(CONSTRAINTS) pip "setuptools<81" wheel
	$(PY) -m pip install --quiet --no-build-isolation -c $(CONSTRAINTS) -r requirements.txt -r requirements-dev.txt
	touch $(INSTALLED)

lock:
	rm -rf $(LOCK_VENV)
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install --quiet --upgrade pip "setuptools<81" wheel
	$(LOCK_VENV)/bin/python -m pip install --quiet --no-build-isolation -r requirements.txt -r requirements-dev.txt
	{ echo "# Exact versions of every package the Makefile installs (pip constraints), made by 'make lock' with"; \
	  echo "# $$($(LOCK_VENV)/bin/python -c 'import platform; print(platform.python_implementation(), platform.python_version(), platform.system(), platform.machine())') on $$(date -u +%Y-%m-%d); the tests passed with these."; \
	  $(LOCK_VENV)/bin/python -m pip freeze --all; } > $(CONSTRAINTS).new
	mv $(CONSTRAINTS).new $(CONSTRAINTS)
	rm -rf $(LOCK_VENV)
	@echo "wrote $(CONSTRAINTS); now run make test (it reinstalls .venv with these pins) and commit the file if it passes"

# Each demo target also runs alone; `make demo` runs them all (the install, made once, not again: -o) and prints
# how long each took on one line, "demo timing: ...", which benchmarks/readme_times.py repeats under its table.
demo: $(INSTALLED)
	@set -e; total=0; timing=""; \
	for target in $(DEMO_TARGETS); do \
		start=$$(date +%s); $(MAKE) --no-print-directory -o $(INSTALLED) $$target; seconds=$$(( $$(date +%s) - start )); \
		total=$$(( total + seconds )); timing="$$timing $$target $${seconds} s,"; \
	done; \
	echo "demo timing:$$timing total $${total} s"
	@echo "Result pages:"
	@echo "  cross-band (Gatys):     results/x2ka_demo/test_latest/index.html (metrics: metrics.json, metrics*.csv)"
	@echo "  feature visualization:  results/content_demo/VGG16/index.html, results/style_demo/VGG16/index.html"
	@echo "  EO to SAR (U-GAT-IT):   results/eo2sar_demo/test_latest/index.html, results/eo2sar_demo/app*/"
	@echo "  Sentinel-2 to Sentinel-1 (SEN12MS layout): results/sen12ms_demo/test_latest/index.html (real_B beside"
	@echo "                          fake_A2B), results/sen12ms_demo/app/*.tif (VV/VH dB GeoTIFFs)"
	@echo "  paired (pix2pix), the same tree: results/pix2pix_demo/test_latest/index.html (real_A, fake_B, real_B,"
	@echo "                          dB error map), results/pix2pix_demo/app/*.tif (VV/VH dB GeoTIFFs)"

demo-gatys: $(INSTALLED)
	$(PY) datasets/make_dataset.py x2ka
	@set -e; weights=$(call WEIGHTS_FOR,vgg19); \
	if [ "$$weights" = random ]; then echo "No ImageNet VGG19 weights in the torch cache: using --vgg_weights random (see docs/cross_band.md#vgg-weights)"; fi; \
	$(PY) train.py --model gatys $(GATYS_DEMO) --vgg_weights $$weights; \
	$(PY) test.py --model gatys $(GATYS_DEMO) --vgg_weights $$weights --num_test 4 --batch_size 4 --n_iter 50; \
	$(PY) evaluate.py --results results/x2ka_demo/test_latest --vgg vgg19 --vgg_weights $$weights --gpu_ids -1 \
		|| [ $$? -eq 3 ]   # 3: the report is written, some metrics unavailable (no FID/LPIPS weights offline)

demo-visualization: $(INSTALLED)
	@set -e; weights=$(call WEIGHTS_FOR,vgg16); \
	if [ "$$weights" = random ]; then echo "No ImageNet VGG16 weights in the torch cache: using --vgg_weights random (see docs/cross_band.md#vgg-weights)"; fi; \
	$(PY) visualization/ContentVisualization.py --model VGG16 --layers_ids 3,8,15 --n_channels 9 --n_iter 120 \
		--im_size 48 --name content_demo --vgg_weights $$weights --gpu_ids -1; \
	$(PY) visualization/StyleVisualization.py --model VGG16 --layers_ids 3,8 --n_channels 6 --n_iter 120 \
		--name style_demo --vgg_weights $$weights --gpu_ids -1

demo-ugatit: $(INSTALLED)
	$(PY) datasets/make_dataset.py eo2sar --size 64
	$(PY) train.py --model ugatit $(EO2SAR_DEMO) --light --ch 16 --n_res 2 --img_size 48 --n_dis 6 --output_nc 1 \
		--iteration 200 --print_freq 50 --save_freq 100 --update_html_freq 50 --display_id 0
	$(PY) test.py --model ugatit $(EO2SAR_DEMO) --num_test 6
	$(PY) app.py --model_path checkpoints/eo2sar_demo/latest_net_ugatit.pth --img datasets/eo2sar/testA \
		--out results/eo2sar_demo/app --heatmap --device cpu
	$(PY) datasets/make_dataset.py eo2sar --out datasets/eo2sar_large --size 256 --n_train 5 --n_test 1
	$(PY) app.py --model_path checkpoints/eo2sar_demo/latest_net_ugatit.pth --img datasets/eo2sar_large/testA \
		--out results/eo2sar_demo/app_tiled --tile 64 --overlap 16 --heatmap --device cpu

# Sentinel-2 (13-band int16 GeoTIFF) to Sentinel-1 (VV/VH dB GeoTIFF) on a miniature SEN12MS tree: the layout's
# defaults read both sensors; app.py needs no radiometry flag, the checkpoint records it.
demo-sen12ms: $(INSTALLED)
	$(PY) datasets/make_dataset.py sen12ms --size 48 --n_scenes 6
	$(PY) train.py --model ugatit $(SEN12MS_DEMO) --light --ch 16 --n_res 2 --img_size 48 --n_dis 6 \
		--iteration 120 --print_freq 40 --save_freq 60 --update_html_freq 40 --display_id 0
	$(PY) test.py --model ugatit $(SEN12MS_DEMO) --num_test 9
	$(PY) app.py --model_path checkpoints/sen12ms_demo/latest_net_ugatit.pth \
		--img 'datasets/sen12ms/ROIs1868_summer/s2_2/*.tif' --out results/sen12ms_demo/app --device cpu

# The same tree, paired: pix2pix learns each Sentinel-2 patch's co-registered Sentinel-1 twin (a small ResNet
# generator for 48 px patches); the test page adds a per-pixel dB error map.
demo-pix2pix: $(INSTALLED)
	$(PY) datasets/make_dataset.py sen12ms --size 48 --n_scenes 6
	$(PY) train.py --model pix2pix $(PIX2PIX_DEMO) --netG resnet_6blocks --ngf 16 --ndf 16 --load_size 48 \
		--crop_size 48 --iteration 200 --print_freq 50 --save_freq 100 --update_html_freq 50 --display_id 0
	$(PY) test.py --model pix2pix $(PIX2PIX_DEMO) --num_test 9
	$(PY) app.py --model_path checkpoints/pix2pix_demo/latest_net_pix2pix.pth \
		--img 'datasets/sen12ms/ROIs1868_summer/s2_2/*.tif' --out results/pix2pix_demo/app --device cpu

test: $(INSTALLED)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest

# The tests marked `numerics` (floating-point results compared at a tolerance) as an AVX2-only x86 CPU runs them:
# oneDNN capped at AVX2 (no AVX-512, no bfloat16 instructions, so --precision auto is float32) and ATen's kernels
# too. A tolerance tuned to one CPU fails here, where it is written (.ci/run runs this after `make test`).
test-avx2: $(INSTALLED)
	ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 $(PY) -m pytest -m numerics -q

# On a machine with one CUDA GPU: the CUDA-marked tests, then every benchmark on the GPU (under 8 minutes).
gpu-check: $(INSTALLED)
	@$(PY) -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else \
		'gpu-check: torch sees no CUDA device here (torch.cuda.is_available() is False): run it on a machine with ' \
		'an NVIDIA GPU and a CUDA build of torch')"
	$(PY) -m pytest -q -m cuda -p no:cacheprovider
	$(PY) benchmarks/bench_gatys.py --device cuda --size 256 --baseline_steps 1000 --train_steps 1500
	$(PY) benchmarks/bench_ugatit.py --device cuda --repeats 20 --tiled_size 1024
	$(PY) benchmarks/bench_visualization.py --device cuda

lint: $(INSTALLED)
	$(VENV)/bin/ruff check .
