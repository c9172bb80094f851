"""The blended tiler: translate an image of any size tile by tile and cross-fade the overlaps.

Used by app.py (U-GAT-IT) and by every model that translates scenes larger than its training size. A
translator here is a callable on a B x C x H x W batch in [-1, 1] returning (output, CAM logit, heatmap), the last
two None for generators without attention, with `generator` (its network: output_nc; a full U-GAT-IT generator
also light=False and img_size, the only tile size it takes) and `device` attributes
(models.ugatit_inference.Translator, models.feedforward_generator.FeedForwardTranslator).
"""

import functools

import torch
import torch.nn.functional as F
from torch import nn

from models.ugatit_networks import (
    BOTTLENECK_SCALE,
    AdaptiveInstanceLayerNorm,
    InstanceLayerNorm,
    blended_scale_and_shift,
    scaled_and_shifted,
)
from util.errors import SargenError

NORMALIZATION_TYPES = (AdaptiveInstanceLayerNorm, InstanceLayerNorm, nn.InstanceNorm2d)


def pad_to_multiple(image, multiple=BOTTLENECK_SCALE):
    """Reflect-pad a CxHxW image at the bottom and right to a multiple of `multiple`; return it and (H, W)."""
    height, width = image.shape[-2:]
    pad_bottom, pad_right = -height % multiple, -width % multiple
    if pad_bottom or pad_right:
        mode = "reflect" if pad_bottom < height and pad_right < width else "replicate"
        image = F.pad(image[None], (0, pad_right, 0, pad_bottom), mode=mode)[0]
    return image, (height, width)


def tile_starts(length, tile, stride):
    """Start offsets of tiles of size `tile` covering [0, length) with at most `stride` between them."""
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, stride))
    return starts + [length - tile]


def tile_cores(starts, tile, length):
    """Each tile's own part of [0, length) as (first, stop) relative to the tile: split mid-overlap, on 4 px."""
    bounds = [0]
    for previous, start in zip(starts, starts[1:]):
        middle = (start + previous + tile) // 2
        bounds.append(middle - middle % BOTTLENECK_SCALE)
    bounds.append(length)
    return [(first - start, stop - start) for start, first, stop in zip(starts, bounds, bounds[1:])]


def blend_window(tile, overlap):
    """A tile x tile weight that ramps from ~0 to 1 over `overlap` pixels at each edge (separable)."""
    ramp = torch.ones(tile)
    if overlap > 0:
        edge = (torch.arange(overlap, dtype=torch.float32) + 0.5) / overlap
        ramp[:overlap] = edge
        ramp[-overlap:] = torch.minimum(ramp[-overlap:], edge.flip(0))
    return ramp[:, None] * ramp[None, :]


class SharedNormStatistics:
    """Forward hooks that let every normalization layer use statistics pooled over all tiles of one image.

    U-GAT-IT normalizes by instance and layer statistics, so a tile normalized on its own differs from
    the same region of the whole image. A collecting pass sums each layer's inputs over the part of the
    image each tile owns; later passes normalize every tile with those image-wide statistics (the
    formulas of ugatit_networks' InstanceNorm2d, AdaLIN and LIN with the statistics given).
    """

    def __init__(self, generator, tile):
        """Prepare hooks for the normalization layers of `generator` run on `tile`-pixel tiles."""
        self.layers = [module for module in generator.modules() if isinstance(module, NORMALIZATION_TYPES)]
        self.tile = tile
        self.sums, self.shared, self.cores, self.handles = {}, None, [], []
        self.collecting = True

    def __enter__(self):
        """Install the hooks."""
        self.handles = [layer.register_forward_hook(functools.partial(self.hook, index))
                        for index, layer in enumerate(self.layers)]
        return self

    def __exit__(self, *exc_info):
        """Remove the hooks."""
        for handle in self.handles:
            handle.remove()

    def hook(self, index, module, inputs, output):
        """Collect this layer's sums over the tiles' own parts; normalize with shared statistics once known."""
        features = inputs[0].float()
        if self.collecting:
            self.collect(index, features)
        return None if self.shared is None else self.normalize(index, module, features, inputs)

    def collect(self, index, features):
        """Add the per-channel count, sum and sum of squares over each tile's own part (float64)."""
        scale = self.tile // features.shape[-1]
        count, total, squares = self.sums.get(index, (0, 0.0, 0.0))
        for sample, (top, bottom, left, right) in enumerate(self.cores):
            core = features[sample, :, top // scale: bottom // scale, left // scale: right // scale]
            count += core[0].numel()
            total = total + core.sum(dim=(1, 2), dtype=torch.float64)
            squares = squares + torch.linalg.vector_norm(core, dim=(1, 2), dtype=torch.float64).square()
        self.sums[index] = (count, total, squares)

    def finish_pass(self):
        """Turn the collected sums into the statistics the next pass normalizes with."""
        self.shared = {}
        for index, (count, total, squares) in self.sums.items():
            channels = total.numel()
            mean = total / count
            biased = (squares / count - mean.square()).clamp_min(0)
            layer_mean = total.sum() / (count * channels)
            layer_var = ((squares.sum() - count * channels * layer_mean**2) / (count * channels - 1)).clamp_min(0)
            as_map = lambda values: values.float().view(1, -1, 1, 1)  # noqa: E731
            self.shared[index] = (as_map(mean), as_map(biased), as_map(biased * count / max(count - 1, 1)),
                                  layer_mean.float(), layer_var.float())
        self.sums = {}

    def normalize(self, index, module, features, inputs):
        """The layer's output computed with the shared statistics."""
        mean, biased_var, unbiased_var, layer_mean, layer_var = self.shared[index]
        if isinstance(module, nn.InstanceNorm2d):
            scale = torch.rsqrt(biased_var + module.eps)
            return torch.addcmul(-mean * scale, features, scale)
        statistics = (mean, unbiased_var, layer_mean, layer_var)
        scale, shift = blended_scale_and_shift(statistics, module.rho, module.eps)
        if isinstance(module, AdaptiveInstanceLayerNorm):
            gamma, beta = inputs[1].float()[:, :, None, None], inputs[2].float()[:, :, None, None]
            return scaled_and_shifted(features, scale, shift, gamma, beta)
        return scaled_and_shifted(features, scale, shift, module.gamma, module.beta)


def default_tile_batch(device):
    """Tiles per call: batches pay off on GPUs; on CPUs single tiles stay in cache and run faster."""
    return 4 if torch.device(device).type == "cuda" else 1


def translate_tiled(translator, image, tile, overlap, tile_batch=None, passes=2):
    """Translate a CxHxW image of any size tile by tile, blending overlaps; return (output, heatmap or None).

    Tiles of `tile` pixels step by tile - overlap and are translated `tile_batch` at a time; each
    output tile is weighted by a window that fades out over the overlap, so neighbouring tiles
    cross-fade instead of meeting at a seam. With passes > 1 the first passes only gather image-wide
    normalization statistics (SharedNormStatistics), so tiles match the whole-image translation.
    Working memory grows with the tile batch, not the image.
    """
    if tile % BOTTLENECK_SCALE or tile <= 2 * overlap:
        raise SargenError(f"--tile {tile} must be a multiple of {BOTTLENECK_SCALE} and more than twice "
                          f"--overlap {overlap}")
    # Tiles start on multiples of the network's down-sampling factor, so that each tile's strided layers sample
    # the whole image's grid: the image is padded to a multiple of it and the stride rounded down to one.
    stride = max(BOTTLENECK_SCALE, (tile - overlap) // BOTTLENECK_SCALE * BOTTLENECK_SCALE)
    generator = translator.generator
    tile_batch = tile_batch or default_tile_batch(translator.device)
    if not getattr(generator, "light", True) and tile != generator.img_size:
        raise SargenError(f"a full (non-light) generator only takes {generator.img_size} px tiles: "
                          f"use --tile {generator.img_size}")
    padded, (height, width) = pad_to_multiple(image)
    if height < tile or width < tile:  # small images: pad up to one tile, crop back at the end
        padded = F.pad(padded[None], (0, max(0, tile - padded.shape[-1]), 0, max(0, tile - padded.shape[-2])),
                       mode="replicate")[0]
    row_starts = tile_starts(padded.shape[-2], tile, stride)
    column_starts = tile_starts(padded.shape[-1], tile, stride)
    row_cores, column_cores = tile_cores(row_starts, tile, height), tile_cores(column_starts, tile, width)
    tiles = [((top, left), row_core + column_core) for top, row_core in zip(row_starts, row_cores)
             for left, column_core in zip(column_starts, column_cores)]
    statistics = SharedNormStatistics(generator, tile)
    with statistics:
        for _ in range(passes - 1):
            for first in range(0, len(tiles), tile_batch):
                statistics.cores = [core for _, core in tiles[first: first + tile_batch]]
                translator(torch.stack([padded[:, top: top + tile, left: left + tile]
                                        for (top, left), _ in tiles[first: first + tile_batch]]))
            statistics.finish_pass()
        statistics.collecting = False  # the last pass only uses what the earlier ones gathered
        return blend_tiles(translator, padded, tiles, tile, overlap, tile_batch, statistics, (height, width))


def blend_tiles(translator, padded, tiles, tile, overlap, tile_batch, statistics, size):
    """Translate the tiles batch by batch and cross-fade them into the output and (if any) heatmap canvases."""
    generator, (height, width) = translator.generator, size
    padded_height, padded_width = padded.shape[-2:]
    window = blend_window(tile, overlap)
    scale = BOTTLENECK_SCALE
    output = torch.zeros(generator.output_nc, padded_height, padded_width)
    weights = torch.zeros(1, padded_height, padded_width)
    heatmap = torch.zeros(1, padded_height // scale + 1, padded_width // scale + 1)
    heat_weights = torch.zeros_like(heatmap)
    heat_window, side = window[::scale, ::scale], tile // scale
    for first in range(0, len(tiles), tile_batch):
        batch = tiles[first: first + tile_batch]
        statistics.cores = [core for _, core in batch]
        tile_outputs, _, tile_heatmaps = translator(
            torch.stack([padded[:, top: top + tile, left: left + tile] for (top, left), _ in batch]))
        for index, ((top, left), _) in enumerate(batch):
            output[:, top: top + tile, left: left + tile] += tile_outputs[index] * window
            weights[:, top: top + tile, left: left + tile] += window
            if tile_heatmaps is None:
                continue
            tile_heatmap, heat_top, heat_left = tile_heatmaps[index], top // scale, left // scale
            heatmap[:, heat_top: heat_top + side, heat_left: heat_left + side] += tile_heatmap * heat_window
            heat_weights[:, heat_top: heat_top + side, heat_left: heat_left + side] += heat_window
    output = (output / weights)[:, :height, :width]
    if tile_heatmaps is None:
        return output, None
    heatmap = (heatmap / heat_weights.clamp_min(1e-12))[:, : -(-height // scale), : -(-width // scale)]
    return output, heatmap
