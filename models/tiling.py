"""The blended tiler: translate an image of any size tile by tile and cross-fade the overlaps.

One implementation (tile plan, shared normalization statistics, no-data, blending) with two entry points:

- ``translate_tiled(translator, image, tile, overlap, tile_batch=None, passes=2, valid=None)``: a CxHxW tensor
  in memory; returns (output CxHxW, heatmap 1 x H/4 x W/4, or None when the translator gives none);
- ``translate_rows(translator, source, tile, overlap, tile_batch, passes, write_rows, with_heatmap)``: a scene
  read a band of rows at a time (``source.height``, ``source.width``, ``source.rows(top, bottom)`` ->
  (CxhxW tensor, hxW bool tensor of valid pixels or None)). Each band of output rows is handed to
  ``write_rows(top, rows, valid)`` as soon as no later tile overlaps it, so memory is bounded by one band of
  tile rows, not by the scene. Returns the heatmap (or None).

The translator protocol: a callable on a CPU B x C x T x T batch in the model range ([-1, 1]; T is the tile
side; the translator moves it to its device) returning the B x output_nc x T x T output (on any device), or a
tuple whose first item is the output and whose third, if any, is a B x 1 x T/4 x T/4 heatmap (U-GAT-IT's
(output, cam_logit, heatmap)); with attributes ``generator`` (its torch module, with ``output_nc``; a module
whose ``light`` attribute is False only takes tiles of its ``img_size``) and ``device``.
models.ugatit_inference.Translator is one, models.feedforward_generator.FeedForwardTranslator (the Gatys
feed-forward generator, output without attention: (output, None, None)) another. Normalization layers
(nn.InstanceNorm2d without running statistics, with or without affine, and U-GAT-IT's AdaLIN and LIN) are found
by type and, with passes > 1, normalize every tile with statistics pooled over the whole image.

No-data: ``valid`` (HxW, True = valid) marks the valid pixels. Every tile's masked pixels are filled from its
valid pixels (data.radiometry.fill_masked: mirrored at the no-data edge), masked pixels are left out of the
pooled statistics, and tiles without a valid pixel are not translated. The output at masked pixels has no
meaning: writers store no-data there.
"""

import functools

import torch
import torch.nn.functional as F
from torch import nn

from data.radiometry import fill_masked
from models.ugatit_networks import (
    BOTTLENECK_SCALE,
    AdaptiveInstanceLayerNorm,
    InstanceLayerNorm,
    blended_scale_and_shift,
    scaled_and_shifted,
)
from util.errors import SargenError

NORMALIZATION_TYPES = (AdaptiveInstanceLayerNorm, InstanceLayerNorm, nn.InstanceNorm2d)
HEATMAP_SCALE = BOTTLENECK_SCALE


def size_multiple(generator):
    """The multiple of which a generator's input sides must be: its `size_multiple` (a U-Net's 2**levels), else 4."""
    return getattr(generator, "size_multiple", BOTTLENECK_SCALE)


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


class TilePlan:
    """Where the tiles of a height x width image go: rows and columns of starts, and the part each tile owns.

    The image is padded (mirrored, or edge pixels repeated when it is too small) to a multiple of the network's
    down-sampling factor, and up to one tile when smaller, and cropped back.
    """

    def __init__(self, height, width, tile, overlap, generator):
        """Check the tile size against `overlap` and `generator`, and plan the tiles."""
        multiple = size_multiple(generator)
        if tile % multiple or tile <= 2 * overlap or overlap < 0:
            raise SargenError(f"--tile {tile} must be a multiple of {multiple} and more than twice "
                              f"--overlap {overlap} (>= 0)")
        if getattr(generator, "light", True) is False and tile != generator.img_size:
            raise SargenError(f"a full (non-light) generator only takes {generator.img_size} px tiles: "
                              f"use --tile {generator.img_size}")
        self.height, self.width, self.tile, self.overlap = height, width, tile, overlap
        # Tiles start on multiples of the network's down-sampling factor, so that each tile's strided layers sample
        # the whole image's grid: the image is padded to a multiple of it and the stride rounded down to one.
        self.padded_height = max(-(-height // multiple) * multiple, tile)
        self.padded_width = max(-(-width // multiple) * multiple, tile)
        stride = max(multiple, (tile - overlap) // multiple * multiple)
        self.row_starts = tile_starts(self.padded_height, tile, stride)
        self.column_starts = tile_starts(self.padded_width, tile, stride)
        self.row_cores = tile_cores(self.row_starts, tile, height)
        self.column_cores = tile_cores(self.column_starts, tile, width)

    def row_tiles(self, row):
        """(left, (core top, bottom, left, right)) of each tile of tile row `row`, left to right."""
        return [(left, self.row_cores[row] + column_core)
                for left, column_core in zip(self.column_starts, self.column_cores)]


def pooled_layers(generator):
    """The normalization layers of `generator` whose statistics depend on the image (those the tiler pools)."""
    return [module for module in generator.modules() if isinstance(module, NORMALIZATION_TYPES)
            and not getattr(module, "track_running_stats", False)]


class SharedNormStatistics:
    """Forward hooks that let every normalization layer use statistics pooled over all tiles of one image.

    U-GAT-IT normalizes by instance and layer statistics, so a tile normalized on its own differs from
    the same region of the whole image. A collecting pass sums each layer's inputs over the valid pixels of
    the part of the image each tile owns; later passes normalize every tile with those image-wide statistics
    (the formulas of InstanceNorm2d, AdaLIN and LIN with the statistics given).
    """

    def __init__(self, generator, tile):
        """Prepare hooks for the normalization layers of `generator` run on `tile`-pixel tiles."""
        self.layers = pooled_layers(generator)
        self.tile = tile
        self.sums, self.shared, self.cores, self.masks, self.handles = {}, None, [], [], []
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
        """Add the per-channel count, sum and sum of squares over each tile's own valid part (float64)."""
        scale = self.tile // features.shape[-1]
        count, total, squares = self.sums.get(index, (0, 0.0, 0.0))
        for sample, ((top, bottom, left, right), valid) in enumerate(zip(self.cores, self.masks)):
            core = features[sample, :, top // scale: bottom // scale, left // scale: right // scale]
            if valid is not None:  # a feature pixel counts when any image pixel under it is valid
                valid = F.max_pool2d(valid[None, None].float(), scale)[0, 0] if scale > 1 else valid
                core = core[:, valid[top // scale: bottom // scale, left // scale: right // scale].bool()]
            count += core[0].numel()
            total = total + core.sum(dim=tuple(range(1, core.dim())), dtype=torch.float64)
            squares = squares + torch.linalg.vector_norm(core, dim=tuple(range(1, core.dim())),
                                                         dtype=torch.float64).square()
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
            shift = -mean * scale
            if module.affine:
                weight = module.weight.float().view(1, -1, 1, 1)
                scale, shift = scale * weight, shift * weight + module.bias.float().view(1, -1, 1, 1)
            return torch.addcmul(shift, features, scale)
        statistics = (mean, unbiased_var, layer_mean, layer_var)
        scale, shift = blended_scale_and_shift(statistics, module.rho, module.eps)
        if isinstance(module, AdaptiveInstanceLayerNorm):
            gamma, beta = inputs[1].float()[:, :, None, None], inputs[2].float()[:, :, None, None]
            return scaled_and_shifted(features, scale, shift, gamma, beta)
        return scaled_and_shifted(features, scale, shift, module.gamma, module.beta)


def pooling_passes(generator, passes):
    """The passes a tiled translation makes: `passes`, or 1 when `generator` has no layer whose statistics the first
    passes would pool (batch normalization at eval is per-pixel: a tile is already normalized as the image)."""
    return passes if pooled_layers(generator) else 1


def default_tile_batch(device):
    """Tiles per call: batches pay off on GPUs; on CPUs single tiles stay in cache and run faster."""
    return 4 if torch.device(device).type == "cuda" else 1


def output_and_heatmap(result):
    """(output, heatmap or None) of a translator's result: a tensor, or U-GAT-IT's (output, cam_logit, heatmap)."""
    if isinstance(result, torch.Tensor):
        return result, None
    return result[0], result[2] if len(result) > 2 else None


class MemorySource:
    """A CxHxW tensor (and its HxW valid mask) read a band of rows at a time, as translate_rows reads scenes."""

    def __init__(self, image, valid=None):
        """Wrap `image` and `valid` (None: every pixel valid)."""
        self.image, self.valid = image, None if valid is None else torch.as_tensor(valid, dtype=torch.bool)
        self.height, self.width = image.shape[-2:]

    def rows(self, top, bottom):
        """Rows [top, bottom): (image rows, valid rows or None)."""
        return self.image[:, top:bottom], None if self.valid is None else self.valid[top:bottom]


def translate_whole(translator, image):
    """Translate one CxHxW image at its own size (padded to the generator's size multiple); return (output, heatmap
    or None)."""
    padded, (height, width) = pad_to_multiple(image, size_multiple(getattr(translator, "generator", None)))
    output, heatmap = output_and_heatmap(translator(padded[None]))
    return output[0, :, :height, :width], None if heatmap is None else heatmap[0]


def translate_tiled(translator, image, tile, overlap, tile_batch=None, passes=2, valid=None):
    """Translate a CxHxW image of any size tile by tile, blending overlaps; return (output, heatmap).

    Tiles of `tile` pixels step by tile - overlap and are translated `tile_batch` at a time; each
    output tile is weighted by a window that fades out over the overlap, so neighbouring tiles
    cross-fade instead of meeting at a seam. With passes > 1 the first passes only gather image-wide
    normalization statistics (SharedNormStatistics), so tiles match the whole-image translation.
    Working memory grows with the tile batch, not the image. `valid`: see the module docstring.
    """
    height, width = image.shape[-2:]
    output = None

    def keep_rows(top, rows, _valid):
        nonlocal output
        if output is None:
            output = torch.zeros(rows.shape[0], height, width)
        output[:, top: top + rows.shape[1]] = rows

    heatmap = translate_rows(translator, MemorySource(image, valid), tile, overlap, tile_batch, passes, keep_rows)
    return output, heatmap


def translate_rows(translator, source, tile, overlap, tile_batch, passes, write_rows, with_heatmap=True):
    """Translate a scene read band by band (see the module docstring), handing finished output rows on in order.

    Returns the heatmap (1 x ceil(H/4) x ceil(W/4)) when `with_heatmap` and the translator gives one, else None.
    """
    plan = TilePlan(source.height, source.width, tile, overlap, translator.generator)
    tile_batch = tile_batch or default_tile_batch(translator.device)
    statistics = SharedNormStatistics(translator.generator, tile)
    with statistics:
        for _ in range(pooling_passes(translator.generator, passes) - 1):
            for row in range(len(plan.row_starts)):
                band, band_valid = read_band(source, plan, row)
                for batch in tile_batches(plan, row, band, band_valid, tile_batch):
                    run_batch(translator, statistics, batch)
            statistics.finish_pass()
        statistics.collecting = False  # the last pass only uses what the earlier ones gathered
        blender = Blender(plan, translator.generator.output_nc, write_rows, with_heatmap)
        for row in range(len(plan.row_starts)):
            band, band_valid = read_band(source, plan, row)
            blender.start_row(row, band_valid)
            for batch in tile_batches(plan, row, band, band_valid, tile_batch):
                blender.add(batch, run_batch(translator, statistics, batch))
        return blender.finish()


def read_band(source, plan, row):
    """The rows of tile row `row` (tile rows x padded width), padded at the bottom and right edges of the image."""
    top = plan.row_starts[row]
    band, valid = source.rows(top, min(top + plan.tile, source.height))
    pad_bottom, pad_right = plan.tile - band.shape[-2], plan.padded_width - band.shape[-1]
    if pad_bottom or pad_right:
        # mirrored as the networks pad their borders (and pad_to_multiple the whole image), repeated when too small
        mode = "reflect" if pad_bottom < band.shape[-2] and pad_right < band.shape[-1] else "replicate"
        band = F.pad(band[None].float(), (0, pad_right, 0, pad_bottom), mode=mode)[0]
        if valid is not None:
            valid = F.pad(valid[None, None].float(), (0, pad_right, 0, pad_bottom), mode=mode)[0, 0].bool()
    return band.float(), valid


def tile_batches(plan, row, band, band_valid, tile_batch):
    """Lists of up to `tile_batch` (left, core, tile image filled where masked, tile mask or None) of a tile row.

    Tiles without a valid pixel are left out.
    """
    tiles = []
    for left, core in plan.row_tiles(row):
        image = band[:, :, left: left + plan.tile]
        valid = None if band_valid is None else band_valid[:, left: left + plan.tile]
        if valid is not None:
            if not bool(valid.any()):
                continue
            image = fill_masked(image, valid.numpy())
            valid = None if bool(valid.all()) else valid
        tiles.append((left, core, image, valid))
    return [tiles[first: first + tile_batch] for first in range(0, len(tiles), tile_batch)]


def run_batch(translator, statistics, batch):
    """Translate a batch of tiles, telling the statistics hooks which part of each tile is its own and valid."""
    statistics.cores = [core for _, core, _, _ in batch]
    statistics.masks = [valid for _, _, _, valid in batch]
    return output_and_heatmap(translator(torch.stack([image for _, _, image, _ in batch])))


class Blender:
    """Cross-fades translated tiles into a band of output rows and hands finished rows on, in order."""

    def __init__(self, plan, output_nc, write_rows, with_heatmap):
        """Output and weight canvases one tile row high; the heatmap canvas for the whole (quarter-size) image."""
        self.plan, self.write_rows = plan, write_rows
        self.window = blend_window(plan.tile, plan.overlap)
        self.output = torch.zeros(output_nc, plan.tile, plan.padded_width)
        self.weights = torch.zeros(1, plan.tile, plan.padded_width)
        self.top, self.written, self.valid = 0, 0, None
        self.with_heatmap, self.heatmap, self.heat_weights = with_heatmap, None, None

    def start_row(self, row, valid):
        """Hand on the rows no tile of row `row` or later overlaps, and move the canvases down to its top."""
        top = self.plan.row_starts[row]
        self.emit(top)
        shift = top - self.top
        if shift:
            self.output = torch.cat([self.output[:, shift:], torch.zeros_like(self.output[:, :shift])], dim=1)
            self.weights = torch.cat([self.weights[:, shift:], torch.zeros_like(self.weights[:, :shift])], dim=1)
        self.top, self.valid = top, valid

    def add(self, batch, result):
        """Add each translated tile of `batch`, weighted by the blend window."""
        outputs, heatmaps = result
        tile = self.plan.tile
        for index, (left, _, _, _) in enumerate(batch):
            self.output[:, :, left: left + tile] += outputs[index].float().cpu() * self.window
            self.weights[:, :, left: left + tile] += self.window
            if self.with_heatmap and heatmaps is not None:
                self.add_heatmap(left, heatmaps[index].float().cpu())

    def add_heatmap(self, left, heatmap):
        """Add a tile's heatmap to the quarter-size heatmap canvas."""
        plan, scale = self.plan, HEATMAP_SCALE
        if self.heatmap is None:
            self.heatmap = torch.zeros(1, plan.padded_height // scale + 1, plan.padded_width // scale + 1)
            self.heat_weights = torch.zeros_like(self.heatmap)
        heat_window, side = self.window[::scale, ::scale], plan.tile // scale
        heat_top, heat_left = self.top // scale, left // scale
        self.heatmap[:, heat_top: heat_top + side, heat_left: heat_left + side] += heatmap * heat_window
        self.heat_weights[:, heat_top: heat_top + side, heat_left: heat_left + side] += heat_window

    def emit(self, stop):
        """Hand on the finished rows [written, stop) of the image (the canvas starts at self.top)."""
        stop = min(stop, self.plan.height)
        if stop <= self.written:
            return
        first, last = self.written - self.top, stop - self.top
        width = self.plan.width
        rows = self.output[:, first:last, :width] / self.weights[:, first:last, :width].clamp_min(1e-12)
        valid = None if self.valid is None else self.valid[first:last, :width]
        self.write_rows(self.written, rows, valid)
        self.written = stop

    def finish(self):
        """Hand on the last rows; return the heatmap (cropped to the image) or None."""
        self.emit(self.plan.height)
        if self.heatmap is None:
            return None
        scale, plan = HEATMAP_SCALE, self.plan
        heatmap = self.heatmap / self.heat_weights.clamp_min(1e-12)
        return heatmap[:, : -(-plan.height // scale), : -(-plan.width // scale)]
