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
from models.tiling import TilePlan, gather_statistics, grouped_tiles, sampled_tiles, translate_tiled, translate_whole
from models.tiling import MemorySource
from models.ugatit_inference import Translator
from models.ugatit_networks import Generator

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
    """A gatys_feedforward generator (ngf 8, 2 residual blocks) after 200 training steps from X to Ka band
    (an L1 loss to the co-registered Ka image of example x2ka pairs)."""
    torch.manual_seed(2)
    pairs = [render_x2ka(np.random.default_rng(index), 48, category_of(index)) for index in range(6)]
    sources = torch.stack([to_model_range(x_band) for x_band, _ in pairs])
    targets = torch.stack([to_model_range(ka_band) for _, ka_band in pairs])
    generator = trained(FeedForwardGenerator(3, 3, ngf=8, n_res=2), sources, targets, 200)
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
