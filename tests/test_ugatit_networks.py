"""Tests for the U-GAT-IT networks: shapes, checkpoint layout, config inference, reference numerics."""

import copy
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from benchmarks.ugatit_reference import reference_forward
from models.ugatit_networks import (
    AdaptiveInstanceLayerNorm,
    Discriminator,
    Generator,
    InstanceLayerNorm,
    ResnetAdaILNBlock,
    RhoClipper,
    discriminator_config_from_state_dict,
    generator_config_from_state_dict,
)
from util.checkpoint import CheckpointMismatchError, load_state_dict_strict

KEY_LIST_PATH = Path(__file__).parent / "data" / "ugatit_eo2sar_checkpoint_keys.json"
PUBLISHED_NETWORKS = ["genA2B", "genB2A", "disGA", "disGB", "disLA", "disLB"]


@pytest.fixture(scope="module")
def published():
    """The published eo2sar checkpoint description (key lists, shapes, configs, counts)."""
    return json.loads(KEY_LIST_PATH.read_text())


@pytest.fixture(autouse=True)
def seeded():
    """Seed torch so every test sees the same random weights and inputs."""
    torch.manual_seed(0)


def build_network(name, kwargs, device="cpu"):
    """A Generator for gen* names, otherwise a Discriminator, built on device."""
    network_class = Generator if name.startswith("gen") else Discriminator
    with torch.device(device):
        return network_class(**kwargs)


def meta_state_dict(key_list):
    """A state dict of shape-only (meta) tensors from [key, shape] pairs."""
    return {key: torch.empty(shape, device="meta") for key, shape in key_list}


def key_shapes(state_dict):
    """[key, shape] pairs of a state dict, in order."""
    return [[key, list(tensor.shape)] for key, tensor in state_dict.items()]


@pytest.mark.parametrize(
    ("light", "input_nc", "output_nc", "img_size"),
    [(True, 3, 3, 32), (False, 1, 3, 32), (True, 1, 1, 64), (False, 3, 1, 64)],
)
def test_generator_output_shapes(light, input_nc, output_nc, img_size):
    """The generator returns a tanh image, two CAM logits and a quarter-size heatmap."""
    generator = Generator(input_nc, output_nc, ngf=8, n_blocks=2, img_size=img_size, light=light)
    image = torch.randn(2, input_nc, img_size, img_size)
    output, cam_logit, heatmap = generator(image)
    assert output.shape == (2, output_nc, img_size, img_size)
    assert cam_logit.shape == (2, 2)
    assert heatmap.shape == (2, 1, img_size // 4, img_size // 4)
    assert output.abs().max() <= 1


@pytest.mark.parametrize(
    ("input_nc", "n_layers", "img_size", "patches", "heatmap_side"),
    [(3, 5, 32, 2, 3), (1, 5, 64, 6, 7), (3, 7, 128, 2, 3), (1, 3, 16, 6, 7)],
)
def test_discriminator_output_shapes(input_nc, n_layers, img_size, patches, heatmap_side):
    """The discriminator returns a patch map, two CAM logits and a heatmap one larger than the map."""
    discriminator = Discriminator(input_nc, ndf=4, n_layers=n_layers)
    out, cam_logit, heatmap = discriminator(torch.randn(2, input_nc, img_size, img_size))
    assert out.shape == (2, 1, patches, patches)
    assert cam_logit.shape == (2, 2)
    assert heatmap.shape == (2, 1, heatmap_side, heatmap_side)


@pytest.mark.parametrize("name", PUBLISHED_NETWORKS)
def test_published_config_has_checkpoint_keys_and_shapes(published, name):
    """With the published config, state_dict() has exactly the checkpoint's keys, shapes and order."""
    network = build_network(name, published["network_kwargs"][name], device="meta")
    assert key_shapes(network.state_dict()) == published["state_dicts"][name]


@pytest.mark.parametrize("name", ["genA2B", "disGA", "disLA"])
def test_published_key_list_loads_strictly(published, name):
    """A state dict shaped like the published checkpoint passes the strict loader."""
    network = build_network(name, published["network_kwargs"][name], device="meta")
    load_state_dict_strict(network, meta_state_dict(published["state_dicts"][name]), name)


def test_published_shape_generator_checkpoint_loads_every_tensor(published):
    """Loading a (random) published-shape generator checkpoint sets every tensor of the model."""
    kwargs = published["network_kwargs"]["genA2B"]
    checkpoint = {key: torch.randn(shape) for key, shape in published["state_dicts"]["genA2B"]}
    generator = load_state_dict_strict(Generator(**kwargs), checkpoint, "genA2B")
    for key, tensor in generator.state_dict().items():
        assert torch.equal(tensor, checkpoint[key]), key


@pytest.mark.parametrize("name", ["genA2B", "disGA", "disLA"])
def test_parameter_counts_match_published_notes(published, name):
    """State-dict element and trainable-parameter counts equal the published ones."""
    network = build_network(name, published["network_kwargs"][name], device="meta")
    counts = published["parameter_counts"]
    assert sum(tensor.numel() for tensor in network.state_dict().values()) == counts["state_dict_numel"][name]
    assert sum(parameter.numel() for parameter in network.parameters()) == counts["trainable_parameters"][name]


def tiny_generator():
    """A small light generator for checkpoint-mismatch tests."""
    return Generator(3, 3, ngf=4, n_blocks=2, img_size=16, light=True)


def test_wrong_shape_is_reported_with_key_and_both_shapes():
    """A tensor of the wrong shape fails with a one-line message naming network, key and shapes."""
    checkpoint = dict(tiny_generator().state_dict())
    checkpoint["FC.0.weight"] = torch.zeros(16, 32)
    with pytest.raises(CheckpointMismatchError) as caught:
        load_state_dict_strict(tiny_generator(), checkpoint, "genA2B")
    message = str(caught.value)
    assert isinstance(caught.value, ValueError)
    assert message.startswith("genA2B: ")
    assert "'FC.0.weight'" in message and "[16, 32]" in message and "[16, 16]" in message
    assert "\n" not in message


def test_missing_key_is_reported():
    """A checkpoint lacking a tensor fails naming the missing key."""
    checkpoint = dict(tiny_generator().state_dict())
    del checkpoint["UpBlock1_2.norm1.rho"]
    with pytest.raises(CheckpointMismatchError, match=r"genB2A: .*missing keys 'UpBlock1_2\.norm1\.rho'"):
        load_state_dict_strict(tiny_generator(), checkpoint, "genB2A")


def test_unexpected_key_is_reported():
    """A checkpoint with an extra tensor fails naming the unexpected key."""
    checkpoint = dict(tiny_generator().state_dict())
    checkpoint["UpBlock1_3.conv1.weight"] = torch.zeros(16, 16, 3, 3)
    with pytest.raises(CheckpointMismatchError, match=r"unexpected keys 'UpBlock1_3\.conv1\.weight'"):
        load_state_dict_strict(tiny_generator(), checkpoint, "genA2B")


def test_light_checkpoint_into_full_generator_names_fc(published):
    """Loading the light published generator into a full one points at FC.0.weight."""
    full_kwargs = dict(published["network_kwargs"]["genA2B"], light=False)
    full = build_network("genA2B", full_kwargs, device="meta")
    checkpoint = meta_state_dict(published["state_dicts"]["genA2B"])
    with pytest.raises(CheckpointMismatchError, match=r"'FC\.0\.weight'.*\[256, 256\].*\[256, 1048576\]"):
        load_state_dict_strict(full, checkpoint, "genA2B")


GENERATOR_CONFIGS = [
    {"input_nc": 3, "output_nc": 3, "ngf": 8, "n_blocks": 2, "img_size": None, "light": True},
    {"input_nc": 1, "output_nc": 3, "ngf": 16, "n_blocks": 4, "img_size": None, "light": True},
    {"input_nc": 3, "output_nc": 1, "ngf": 8, "n_blocks": 4, "img_size": 64, "light": False},
    {"input_nc": 1, "output_nc": 1, "ngf": 16, "n_blocks": 2, "img_size": 32, "light": False},
    {"input_nc": 3, "output_nc": 3, "ngf": 8, "n_blocks": 0, "img_size": 256, "light": False},
]


@pytest.mark.parametrize("config", GENERATOR_CONFIGS)
def test_generator_config_round_trips(config):
    """Generator options read back from a state dict equal those it was built with."""
    build_kwargs = dict(config, img_size=config["img_size"] or 128)
    generator = build_network("gen", build_kwargs, device="meta")
    assert generator_config_from_state_dict(generator.state_dict()) == config


DISCRIMINATOR_CONFIGS = [
    {"input_nc": 3, "ndf": 64, "n_layers": 7},
    {"input_nc": 1, "ndf": 8, "n_layers": 5},
    {"input_nc": 3, "ndf": 4, "n_layers": 3},
]


@pytest.mark.parametrize("config", DISCRIMINATOR_CONFIGS)
def test_discriminator_config_round_trips(config):
    """Discriminator options read back from a state dict equal those it was built with."""
    discriminator = build_network("dis", config, device="meta")
    assert discriminator_config_from_state_dict(discriminator.state_dict()) == config


def test_configs_from_published_key_lists(published):
    """The published key lists give the published options (img_size unknown for light)."""
    generator_config = generator_config_from_state_dict(meta_state_dict(published["state_dicts"]["genA2B"]))
    assert generator_config == dict(published["network_kwargs"]["genA2B"], img_size=None)
    for name in ("disGA", "disLA"):
        state_dict = meta_state_dict(published["state_dicts"][name])
        assert discriminator_config_from_state_dict(state_dict) == published["network_kwargs"][name]


def test_config_inference_rejects_other_state_dicts():
    """A state dict of some other network is refused with the missing key named."""
    with pytest.raises(CheckpointMismatchError, match="DownBlock.1.weight"):
        generator_config_from_state_dict({"conv.weight": torch.zeros(1)})
    with pytest.raises(CheckpointMismatchError, match="weight_orig"):
        discriminator_config_from_state_dict({"model.1.weight": torch.zeros(4, 3, 4, 4)})


def test_invalid_options_are_refused():
    """A full generator needs img_size divisible by 4; a discriminator needs n_layers >= 3."""
    with pytest.raises(ValueError, match="img_size"):
        Generator(3, 3, ngf=4, n_blocks=1, img_size=30, light=False)
    with pytest.raises(ValueError, match="n_layers"):
        Discriminator(3, ndf=4, n_layers=2)


def test_rho_initial_values_and_clipping():
    """AdaLIN rho starts at 0.9 and LIN rho at 0; RhoClipper clamps only rho into [0, 1]."""
    generator = tiny_generator()
    assert torch.all(generator.UpBlock1_1.norm1.rho == 0.9)
    assert torch.all(generator.UpBlock2[3].rho == 0)
    with torch.no_grad():
        for name, parameter in generator.named_parameters():
            if name.endswith(("rho", "3.gamma")):
                parameter.uniform_(-1.0, 2.0)
    ln_gamma_before = generator.UpBlock2[3].gamma.clone()
    RhoClipper(0.0, 1.0)(generator)
    rhos = torch.cat([p.flatten() for n, p in generator.named_parameters() if n.endswith("rho")])
    assert rhos.min() == 0.0 and rhos.max() == 1.0
    assert torch.equal(generator.UpBlock2[3].gamma, ln_gamma_before)
    with pytest.raises(ValueError):
        RhoClipper(1.0, 0.0)


def reference_mix_instance_layer(features, rho, unbiased=True, eps=1e-5):
    """Independent restatement of the reference's instance/layer-norm blend (before the affine)."""
    def normalized(dims):
        count = 1
        for dim in dims:
            count *= features.shape[dim]
        centered = features - features.sum(dim=dims, keepdim=True) / count
        var = (centered**2).sum(dim=dims, keepdim=True) / (count - 1 if unbiased else count)
        return centered / (var + eps).sqrt()

    return rho * normalized((2, 3)) + (1 - rho) * normalized((1, 2, 3))


def reference_ada_iln_block(block, features, gamma, beta, unbiased=True):
    """Reference ResnetAdaILNBlock forward written with torch.nn.functional and the block's parameters."""
    def ada_iln(x, norm):
        mixed = reference_mix_instance_layer(x, norm.rho, unbiased)
        return mixed * gamma[:, :, None, None] + beta[:, :, None, None]

    out = F.conv2d(F.pad(features, (1, 1, 1, 1), mode="reflect"), block.conv1.weight)
    out = F.relu(ada_iln(out, block.norm1))
    out = F.conv2d(F.pad(out, (1, 1, 1, 1), mode="reflect"), block.conv2.weight)
    return ada_iln(out, block.norm2) + features


@pytest.mark.numerics
def test_ada_iln_block_matches_reference_forward():
    """ResnetAdaILNBlock equals the reference formula, which uses the unbiased variance."""
    block = ResnetAdaILNBlock(6).double()
    with torch.no_grad():
        block.norm1.rho.uniform_(0, 1)
        block.norm2.rho.uniform_(0, 1)
    features = torch.randn(2, 6, 5, 5, dtype=torch.float64)
    gamma, beta = torch.randn(2, 6, dtype=torch.float64), torch.randn(2, 6, dtype=torch.float64)
    with torch.no_grad():
        actual = block(features, gamma, beta)
        torch.testing.assert_close(actual, reference_ada_iln_block(block, features, gamma, beta))
        biased = reference_ada_iln_block(block, features, gamma, beta, unbiased=False)
    assert not torch.allclose(actual, biased, atol=1e-3)


@pytest.mark.numerics
def test_norm_layers_match_reference_formula():
    """AdaLIN and LIN apply the reference blend and affine."""
    features = torch.randn(3, 4, 6, 7, dtype=torch.float64)
    adaptive, plain = AdaptiveInstanceLayerNorm(4).double(), InstanceLayerNorm(4).double()
    with torch.no_grad():
        for parameter in (adaptive.rho, plain.rho, plain.gamma, plain.beta):
            parameter.uniform_(0, 1)
        gamma, beta = torch.randn(3, 4, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64)
        expected_adaptive = reference_mix_instance_layer(features, adaptive.rho) * gamma[:, :, None, None]
        torch.testing.assert_close(adaptive(features, gamma, beta), expected_adaptive + beta[:, :, None, None])
        expected_plain = reference_mix_instance_layer(features, plain.rho) * plain.gamma + plain.beta
        torch.testing.assert_close(plain(features), expected_plain)


@pytest.mark.numerics
def test_fused_statistics_equal_reference_formula_in_float32():
    """The fast path's folded scale-and-shift gives the reference blend to float32 rounding, offset data too."""
    generator = torch.Generator().manual_seed(3)
    features = torch.randn(2, 16, 12, 9, generator=generator) * 3 + 40  # means far from 0 stress cancellation
    adaptive, plain = AdaptiveInstanceLayerNorm(16), InstanceLayerNorm(16)
    with torch.no_grad():
        for parameter in (adaptive.rho, plain.rho, plain.gamma, plain.beta):
            parameter.uniform_(0, 1, generator=generator)
        gamma, beta = torch.randn(2, 16, generator=generator), torch.randn(2, 16, generator=generator)
        expected_adaptive, expected_plain = adaptive(features, gamma, beta), plain(features)
        adaptive.fused_statistics = plain.fused_statistics = True
        fused_adaptive, fused_plain = adaptive(features, gamma, beta), plain(features)
    torch.testing.assert_close(fused_adaptive, expected_adaptive, rtol=0, atol=1e-4)
    torch.testing.assert_close(fused_plain, expected_plain, rtol=0, atol=1e-4)
    assert not torch.equal(fused_adaptive, expected_adaptive)  # a different computation, not the same path


@pytest.mark.numerics
def test_fused_statistics_backpropagate_like_the_reference_formula():
    """Training uses the fused formula: its gradients for the input, rho, gamma and beta are the reference's."""
    generator = torch.Generator().manual_seed(4)
    features = (torch.randn(2, 8, 6, 5, generator=generator, dtype=torch.float64) + 2).requires_grad_()
    gamma = torch.randn(2, 8, generator=generator, dtype=torch.float64).requires_grad_()
    beta = torch.randn(2, 8, generator=generator, dtype=torch.float64).requires_grad_()
    weights = torch.randn(2, 8, 6, 5, generator=generator, dtype=torch.float64)
    layer = AdaptiveInstanceLayerNorm(8).double()
    with torch.no_grad():
        layer.rho.uniform_(0, 1, generator=generator)
    gradients = []
    for fused in (False, True):
        layer.fused_statistics = fused
        inputs = (features, gamma, beta, layer.rho)
        gradients.append(torch.autograd.grad((layer(features, gamma, beta) * weights).sum(), inputs))
    for reference, fused in zip(*gradients):
        torch.testing.assert_close(fused, reference, rtol=1e-9, atol=1e-12)


def spectral_normalized_weight(layer):
    """weight_orig divided by the stored-vector estimate u . (W v) of its largest singular value."""
    sigma = torch.dot(layer.weight_u, layer.weight_orig.flatten(1) @ layer.weight_v)
    return layer.weight_orig / sigma


def reference_discriminator(discriminator, image, cam_weight=lambda fc: fc.weight_orig):
    """Reference Discriminator forward (eval mode) written with torch.nn.functional."""
    x = image
    for index in range(1, len(discriminator.model), 3):
        conv = discriminator.model[index]
        x = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), spectral_normalized_weight(conv), conv.bias, conv.stride)
        x = F.leaky_relu(x, 0.2)
    gap_fc, gmp_fc = discriminator.gap_fc, discriminator.gmp_fc
    gap_logit = x.mean(dim=(2, 3)) @ spectral_normalized_weight(gap_fc).t()
    gmp_logit = x.amax(dim=(2, 3)) @ spectral_normalized_weight(gmp_fc).t()
    weighted = torch.cat([x * cam_weight(gap_fc)[:, :, None, None], x * cam_weight(gmp_fc)[:, :, None, None]], 1)
    x = F.leaky_relu(F.conv2d(weighted, discriminator.conv1x1.weight, discriminator.conv1x1.bias), 0.2)
    heatmap = x.sum(dim=1, keepdim=True)
    out = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), spectral_normalized_weight(discriminator.conv))
    return out, torch.cat([gap_logit, gmp_logit], 1), heatmap


@pytest.mark.numerics
def test_discriminator_matches_reference_forward():
    """The discriminator equals the reference, including CAM weighting by the un-normalized weight_orig."""
    discriminator = Discriminator(3, ndf=4, n_layers=5).double().eval()
    image = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        discriminator(image)  # a second call would expose CAM weighting by the stale normalized `weight`
        actual = discriminator(image)
        for got, expected in zip(actual, reference_discriminator(discriminator, image)):
            torch.testing.assert_close(got, expected)
        normalized_cam = reference_discriminator(discriminator, image, cam_weight=spectral_normalized_weight)
    assert not torch.allclose(actual[0], normalized_cam[0], atol=1e-4)


def test_discriminator_training_step_updates_spectral_norm_vectors():
    """In training mode each forward runs a legacy spectral-norm power iteration, updating weight_v."""
    discriminator = Discriminator(1, ndf=4, n_layers=5)
    before = discriminator.gap_fc.weight_v.clone()
    discriminator(torch.randn(1, 1, 32, 32))
    assert not torch.equal(discriminator.gap_fc.weight_v, before)


@pytest.mark.numerics
def test_stacked_calls_equal_successive_reference_calls():
    """One forward over real+fake (call_sizes) scores, updates u and v, and backpropagates as two hook calls."""
    torch.manual_seed(5)
    fast = Discriminator(3, ndf=4, n_layers=5).double()
    reference = Discriminator(3, ndf=4, n_layers=5).double()
    reference.load_state_dict(fast.state_dict())
    initial_state = copy.deepcopy(fast.state_dict())
    real, fake = torch.randn(2, 3, 32, 32, dtype=torch.float64), torch.randn(3, 3, 32, 32, dtype=torch.float64)
    stacked = fast(torch.cat([real, fake]), call_sizes=(2, 3))
    separate = [reference_forward(reference, real), reference_forward(reference, fake)]
    for got, real_part, fake_part in zip(stacked, *separate):
        torch.testing.assert_close(got, torch.cat([real_part, fake_part]))
    (stacked[0].square().mean() + stacked[1].sum()).backward()
    sum(output[0].square().sum() / stacked[0].numel() + output[1].sum() for output in separate).backward()
    for (name, fast_tensor), reference_tensor in zip(fast.state_dict().items(), reference.state_dict().values()):
        torch.testing.assert_close(fast_tensor, reference_tensor, msg=name)
    for (name, fast_parameter), reference_parameter in zip(fast.named_parameters(), reference.parameters()):
        torch.testing.assert_close(fast_parameter.grad, reference_parameter.grad, msg=name)
    one_call = Discriminator(3, ndf=4, n_layers=5).double()
    one_call.load_state_dict(initial_state)
    # without call_sizes both parts share the first call's sigma, so the fake part scores differently
    assert not torch.allclose(one_call(torch.cat([real, fake]))[0][2:], separate[1][0], rtol=1e-4)
