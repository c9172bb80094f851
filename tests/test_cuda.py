"""The CUDA paths, on a GPU (skipped without one; `make gpu-check` runs them): each against the CPU's float32 result.

cuDNN may use TF32 for float32 convolutions, so comparisons with the CPU allow about 1e-2 on [-1, 1] images.
"""

import pytest
import torch
from conftest import gatys_test_args, gatys_train_args, make_eo2sar
from ugatit_helpers import identical_models, loss_values, read_loss_log, run_entry_point, ugatit_args

import train as train_script
from benchmarks.ugatit_reference import original_training_step
from data import create_dataloader, create_dataset
from models.feedforward_generator import FeedForwardGenerator, FeedForwardTranslator, translate_image
from models.gatys_model import GatysModel
from models.ugatit_inference import Translator
from models.ugatit_networks import Generator
from options.test_options import TestOptions
from options.train_options import TrainOptions

pytestmark = pytest.mark.cuda

CUDA = "cuda:0"


def seeded_ugatit_generator():
    """A small light U-GAT-IT generator with rho moved off its initial values."""
    torch.manual_seed(3)
    generator = Generator(3, 1, ngf=8, n_blocks=2, img_size=64, light=True)
    with torch.no_grad():
        for name, parameter in generator.named_parameters():
            if name.endswith("rho"):
                parameter.uniform_(0.2, 0.8)
    return generator


def test_ugatit_translator_on_cuda_matches_the_cpu():
    """app.py's translator on the GPU (channels_last, bfloat16 where supported) stays close to the CPU's float32."""
    image = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1
    cpu = Translator(seeded_ugatit_generator(), "cpu", "float32")(image)[0]
    for precision in ("float32", "auto"):
        gpu = Translator(seeded_ugatit_generator(), CUDA, precision)(image)[0]
        assert gpu.device.type == "cpu"
        assert (gpu - cpu).abs().mean() < 2e-2, precision


def test_ugatit_training_step_on_cuda_matches_the_reference_step(tmp_path_factory):
    """The fast U-GAT-IT step on the GPU (channels_last) equals the reference step there in losses."""
    root = make_eo2sar(tmp_path_factory, "eo2sar_cuda", size=40, n_train=2, n_test=1)
    args = ugatit_args(root, tmp_path_factory.mktemp("cuda_ugatit"), "cuda", "--iteration", 2)
    args[args.index("--gpu_ids") + 1] = "0"
    opt = TrainOptions().parse(args, save=False)
    models = fast, reference = identical_models(opt)
    batch = next(iter(fast.training_batches(create_dataset(opt))))
    for model in models:
        model.set_input(batch)
    fast.optimize_parameters()
    original_training_step(reference)
    assert fast.real_A.device.type == "cuda"
    for name, value in fast.get_current_losses().items():
        assert value == pytest.approx(reference.get_current_losses()[name], rel=1e-2, abs=1e-3), name


def test_feedforward_translation_and_tiling_on_cuda_match_the_cpu():
    """The feed-forward generator on the GPU, whole and tiled, gives the CPU's translation."""
    torch.manual_seed(0)
    generator = FeedForwardGenerator(3, 3, ngf=8, n_layers=1)
    image = torch.rand(3, 70, 90, generator=torch.Generator().manual_seed(2)) * 2 - 1
    cpu = translate_image(FeedForwardTranslator(generator, "cpu", "float32"), image)
    gpu_translator = FeedForwardTranslator(FeedForwardGenerator(3, 3, ngf=8, n_layers=1), CUDA, "float32")
    gpu_translator.generator.load_state_dict(generator.state_dict())
    for tiling in ({}, {"tile": 48, "overlap": 16, "tile_batch": 4}):
        gpu = translate_image(gpu_translator, image, **tiling)
        assert gpu.shape == cpu.shape
        assert (gpu - cpu).abs().mean() < 2e-2, tiling


def test_feedforward_training_on_cuda_lowers_the_loss(x2ka_root, tmp_path, monkeypatch):
    """Thirty feed-forward training steps on the GPU bring the total loss well below its start."""
    args = gatys_train_args(x2ka_root, tmp_path, "--model", "gatys_feedforward", "--name", "cuda", "--gpu_ids", "0",
                            "--ngf", "8", "--n_layers", "1", "--iteration", "30", "--save_freq", "30", "--batch_size",
                            "2", "--display_id", "0", "--print_freq", "1", "--decay_flag", "false", "--no_html")
    run_entry_point(train_script, args, monkeypatch)
    log = read_loss_log(tmp_path / "checkpoints" / "cuda" / "loss_log.txt")
    totals = [loss_values(log[step][1])["total"] for step in sorted(log)]
    assert sum(totals[-5:]) < 0.5 * sum(totals[:5])


def test_gatys_optimization_on_cuda_lowers_the_loss(x2ka_root, tmp_path):
    """Per-image optimization on the GPU (bfloat16 VGG where supported) lowers each image's loss."""
    train_script.main(gatys_train_args(x2ka_root, tmp_path, "--gpu_ids", "0"))
    opt = TestOptions().parse(gatys_test_args(x2ka_root, tmp_path, "--gpu_ids", "0", "--batch_size", "2",
                                              "--n_iter", "15", "--log_freq", "1"), save=False)
    model = GatysModel(opt)
    model.setup()
    model.set_input(next(iter(create_dataloader(create_dataset(opt), opt, shuffle=False))))
    model.test()
    assert model.fake_B.device.type == "cuda"
    for curve, final in zip(model.curves, model.final_losses[0]):
        assert final < 0.7 * curve[0]["total"]
