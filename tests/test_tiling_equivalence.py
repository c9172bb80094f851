"""Tiles against the whole image on trained and perturbed generators: the statistics the tiler pools, the output's
difference in grey levels at two tile sizes, passes that never move it farther, and the border effect.

Thresholds (8-bit output levels, against the same network run on the whole image): for tiles of 128 px and more
with an overlap of 32, default settings differ by at most 1 level on average and 4 at the 99th percentile.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from ugatit_helpers import one_torch_thread, perturbed_generators  # noqa: F401  (autouse fixture)

from data.image_io import tensor_to_uint8
from datasets.make_dataset import category_of, render_eo2sar_pair, render_x2ka
from models.feedforward_generator import FeedForwardGenerator, FeedForwardTranslator
from models.tile_statistics import PooledStatistics, is_pooled_layer
from models.tiling import (
    TILE_CONTEXT,
    MemorySource,
    TilePlan,
    gather_statistics,
    grouped_tiles,
    sampled_tiles,
    translate_tiled,
    translate_whole,
)
from models.ugatit_inference import Translator
from models.ugatit_networks import AdaptiveInstanceLayerNorm, Generator, InstanceLayerNorm

NORMALIZATION_KINDS = (AdaptiveInstanceLayerNorm, InstanceLayerNorm)

MEAN_LEVELS, P99_LEVELS = 1.0, 4.0


def to_model_range(array):
    """An HxWxC (or HxW) uint8 array as a CxHxW float tensor in [-1, 1]."""
    array = array if array.ndim == 3 else array[:, :, None]
    return torch.from_numpy(array.transpose(2, 0, 1).astype(np.float32)) / 127.5 - 1.0


def eo2sar_pairs(count, size, seed=0):
    """`count` co-registered example (optical, SAR) pairs of `size` px, in [-1, 1] (datasets/make_dataset.py)."""
    pairs = [render_eo2sar_pair(np.random.default_rng(seed + index), size, category_of(index)) for index in
             range(count)]
    return torch.stack([to_model_range(eo) for eo, _ in pairs]), torch.stack([to_model_range(sar) for _, sar in pairs])


def trained(generator, sources, targets, steps, crop=32, batch=2, seed=0):
    """`generator` after `steps` Adam steps of an L1 loss to the co-registered targets (random crops of `batch`
    random pairs)."""
    generator.train()
    optimizer = torch.optim.Adam(generator.parameters(), lr=2e-3, betas=(0.5, 0.999))
    random = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        pairs = torch.randperm(len(sources), generator=random)[:batch]
        top, left = (int(value) for value in torch.randint(0, sources.shape[-1] - crop + 1, (2,), generator=random))
        output = generator(sources[pairs, :, top: top + crop, left: left + crop])
        output = output[0] if isinstance(output, tuple) else output
        loss = F.l1_loss(output, targets[pairs, :, top: top + crop, left: left + crop])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return generator.eval().requires_grad_(False)


@pytest.fixture(scope="module")
def trained_light():
    """A light U-GAT-IT generator (optical 3 -> SAR 1, ngf 8, 2 residual blocks) trained 300 steps on example pairs
    (its own L1 to the co-registered SAR: the GAN objective would take minutes)."""
    torch.manual_seed(1)
    sources, targets = eo2sar_pairs(6, 48)
    generator = trained(Generator(3, 1, ngf=8, n_blocks=2, img_size=32, light=True), sources, targets, 300)
    return Translator(generator, "cpu", "float32")


@pytest.fixture(scope="module")
def published_shape():
    """The published eo2sar generator's shape (light, ngf 64, 4 residual blocks, 3 -> 3) with every weight seeded
    and perturbed by 0.02 x randn."""
    state = perturbed_generators(ngf=64, n_blocks=4, img_size=256, input_nc=3, output_nc=3)["genA2B"]
    generator = Generator(3, 3, ngf=64, n_blocks=4, img_size=256, light=True)
    generator.load_state_dict(state)
    return Translator(generator, "cpu", "float32")


@pytest.fixture(scope="module")
def full_generator():
    """A full (non-light) U-GAT-IT generator of img_size 64 (its MLP sees a 16 x 16 grid), weights perturbed."""
    state = perturbed_generators(ngf=8, n_blocks=2, img_size=64, input_nc=3, output_nc=1, light=False)["genA2B"]
    generator = Generator(3, 1, ngf=8, n_blocks=2, img_size=64, light=False)
    generator.load_state_dict(state)
    return Translator(generator, "cpu", "float32")


@pytest.fixture(scope="module")
def trained_feedforward():
    """A gatys_feedforward generator (ngf 8, 2 layers) after 200 training steps from X to Ka band
    (an L1 loss to the co-registered Ka image of example x2ka pairs)."""
    torch.manual_seed(2)
    pairs = [render_x2ka(np.random.default_rng(index), 48, category_of(index)) for index in range(6)]
    sources = torch.stack([to_model_range(x_band) for x_band, _ in pairs])
    targets = torch.stack([to_model_range(ka_band) for _, ka_band in pairs])
    generator = trained(FeedForwardGenerator(3, 3, ngf=8, n_layers=2), sources, targets, 200)
    return FeedForwardTranslator(generator, "cpu", "float32")


def optical_scene(size, seed=100):
    """An example optical scene of `size` px in [-1, 1] (not seen in training)."""
    return eo2sar_pairs(1, size, seed)[0][0]


def level_difference(translator, image, tile, overlap, **tiling):
    """(mean, 99th percentile, max) of the 8-bit difference between the tiled and the whole-image output."""
    whole = tensor_to_uint8(translate_whole(translator, image)[0], (-1, 1)).astype(int)
    tiled = tensor_to_uint8(translate_tiled(translator, image, tile, overlap, **tiling)[0], (-1, 1)).astype(int)
    difference = np.abs(tiled - whole)
    return difference.mean(), np.percentile(difference, 99), difference.max()


def assert_close_to_whole(translator, image, tile, overlap, max_levels):
    """The default tiling of `image` is within the thresholds of the whole image's output."""
    mean, p99, largest = level_difference(translator, image, tile, overlap)
    assert mean <= MEAN_LEVELS and p99 <= P99_LEVELS and largest <= max_levels, (tile, mean, p99, largest)
    return mean


def test_trained_light_ugatit_tiles_like_the_whole_image(trained_light):
    """A trained light U-GAT-IT, 256 px scene: tiles of 128 and 160 px (overlap 32) as the whole image; tiles
    normalized on their own (one pass) are far off."""
    image = optical_scene(256)
    for tile in (128, 160):
        assert_close_to_whole(trained_light, image, tile, 32, max_levels=8)
    assert level_difference(trained_light, image, 128, 32, passes=1)[0] > 2 * MEAN_LEVELS


def test_published_shape_tiles_like_the_whole_image(published_shape):
    """The published eo2sar generator's shape, every weight perturbed, 224 px scene: tiles of 128 and 144 px
    (overlap 32) as the whole image."""
    image = optical_scene(224, seed=101)
    for tile in (128, 144):
        assert_close_to_whole(published_shape, image, tile, 32, max_levels=8)


def test_full_ugatit_tiles_like_the_whole_image(full_generator):
    """A full U-GAT-IT generator (img_size 64): its MLP sees the bottleneck averaged to its 16 x 16 training grid,
    so it translates any size; tiles of 128 and 160 px pool that grid over the whole 256 px scene. At img_size the
    grid is the bottleneck itself: the reference network's output, unchanged."""
    image = optical_scene(256, seed=102)
    for tile in (128, 160):
        assert_close_to_whole(full_generator, image, tile, 32, max_levels=8)
    at_img_size = optical_scene(64, seed=103)[None]
    generator = full_generator.generator
    with torch.no_grad():
        features = generator.DownBlock(at_img_size)
        assert generator.mlp_pool(features) is features  # the reference flattens the bottleneck as it is


def test_trained_feedforward_tiles_like_the_whole_image(trained_feedforward):
    """A trained gatys_feedforward generator, 256 px X-band scene: tiles of 128 and 160 px as the whole image."""
    image = to_model_range(render_x2ka(np.random.default_rng(104), 256, category_of(3))[0])
    for tile in (128, 160):
        assert_close_to_whole(trained_feedforward, image, tile, 32, max_levels=8)
    assert level_difference(trained_feedforward, image, 128, 32, passes=1)[0] > 2 * level_difference(
        trained_feedforward, image, 128, 32)[0] + 0.5


def half_dark_scene(size):
    """An example optical scene whose left half is much darker: statistics sampled from part of it are off."""
    image = optical_scene(size, seed=105)
    image[:, :, : size // 2] = (image[:, :, : size // 2] + 1) * 0.3 - 1
    return image


def test_more_passes_never_move_the_output_farther(trained_light):
    """With the statistics sample smaller than the scene (4 of its 16 tiles): 1 pass (tiles alone), 2 (a sample's
    statistics), then each sweep over every tile (one more layer's statistics exact each) at least as close to
    the whole image, down to the thresholds (10 sweeps)."""
    image = half_dark_scene(256)
    sample = 4 * 128 * 128  # 64 px tiles with 32 px of context: 128 px
    means = [level_difference(trained_light, image, 64, 16, passes=passes, statistics_pixels=sample)[0]
             for passes in (1, 2, 3, 4, 12)]
    assert all(later <= earlier + 1e-9 for earlier, later in zip(means, means[1:])), means
    assert means[-1] <= MEAN_LEVELS < means[1], means


def test_border_effect_shrinks_with_context_and_overlap(trained_light):
    """With the whole image's statistics the remaining difference is the border effect: it shrinks as the overlap
    grows (no context) and vanishes once the context covers the generator's reach."""
    image = optical_scene(256, seed=106)
    by_overlap = [level_difference(trained_light, image, 128, overlap, context=0)[0] for overlap in (8, 16, 32, 48)]
    assert all(later < earlier for earlier, later in zip(by_overlap, by_overlap[1:])), by_overlap
    by_context = [level_difference(trained_light, image, 128, 16, context=context)[0] for context in (0, 8, 16, 32)]
    assert all(later < earlier for earlier, later in zip(by_context, by_context[1:])), by_context
    assert by_context[-1] < 0.05


def whole_image_statistics(translator, image):
    """Per pooled-layer call of the whole image's forward: (per-channel mean, biased variance) of a normalization
    layer's input, or a pooling layer's output."""
    recorded = []

    def record(module, inputs, output):
        if isinstance(module, (torch.nn.InstanceNorm2d, *NORMALIZATION_KINDS)):
            features = inputs[0].double()
            recorded.append((features.mean(dim=(0, 2, 3)), features.var(dim=(0, 2, 3), unbiased=False)))
        else:
            recorded.append(output.double()[0])

    handles = [module.register_forward_hook(record) for module in translator.generator.modules()
               if is_pooled_layer(module)]
    try:
        translate_whole(translator, image)
    finally:
        for handle in handles:
            handle.remove()
    return recorded


def tiled_statistics(translator, image, tile, overlap, statistics_pixels=None, sweeps=0, groups=4):
    """The tiler's statistics of `image` as translate_rows gathers them, per pooled-layer call: a sample pass, then
    `sweeps` refinement sweeps over every tile in `groups` groups."""
    plan = TilePlan(*image.shape[-2:], tile, overlap, translator.generator, TILE_CONTEXT)
    source = MemorySource(image)
    with PooledStatistics(translator.generator, plan) as statistics:
        gather_statistics(translator, statistics, sampled_tiles(source, plan, statistics_pixels or 10**9), 1)
        statistics.finish_groups()
        for sweep in range(sweeps):
            statistics.start_sweep(exact_calls=sweep)
            for group in range(groups):
                gather_statistics(translator, statistics, grouped_tiles(source, plan, group, groups), 1)
            statistics.finish_groups()
        return statistics.stored


def statistics_error(whole, tiled):
    """The largest difference between two lists of statistics, in units of each layer's spread: mean and standard
    deviation of normalization layers relative to the whole image's standard deviation, pooled values relative to
    the largest of them."""
    worst = 0.0
    for reference, pooled in zip(whole, tiled, strict=True):
        if isinstance(reference, tuple):
            mean, variance = reference
            scale = variance.sqrt().clamp_min(1e-6)
            tiled_mean, tiled_variance = pooled[0].double().flatten(), pooled[1].double().flatten()
            worst = max(worst, float(((tiled_mean - mean).abs() / scale).max()),
                        float(((tiled_variance.sqrt() - variance.sqrt()).abs() / scale).max()))
        else:
            values = pooled.double()[0]
            worst = max(worst, float((values - reference).abs().max() / reference.abs().max().clamp_min(1e-6)))
    return worst


def test_pooled_statistics_are_the_whole_images(trained_light, full_generator):
    """Every normalization layer's per-channel mean and variance, the light generator's pooled MLP input and the
    full generator's 16 x 16 grid of means, as the tiler gathers them (64 px tiles with context: 16 of them), are
    those of the whole image's forward, within 1e-4 of their spread. A scene larger than the statistics sample
    (here 4 tiles): sweeps over every tile (in four groups) come closer, and as many sweeps as pooled-layer calls
    give the whole image's statistics."""
    image = optical_scene(256, seed=107)
    for translator in (trained_light, full_generator):
        whole = whole_image_statistics(translator, image)
        assert len(whole) == sum(is_pooled_layer(module) for module in translator.generator.modules())
        assert statistics_error(whole, tiled_statistics(translator, image, 64, 16)) < 1e-4
    whole = whole_image_statistics(trained_light, image)
    sample = 4 * 128 * 128
    errors = [statistics_error(whole, tiled_statistics(trained_light, image, 64, 16, sample, sweeps))
              for sweeps in (0, 1, 2)]
    assert errors[2] < errors[1] < errors[0], errors
    exact = tiled_statistics(trained_light, image, 64, 16, sample, sweeps=len(whole))
    assert statistics_error(whole, exact) < 1e-4
