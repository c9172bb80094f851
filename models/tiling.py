"""The blended tiler: translate an image of any size tile by tile and cross-fade the overlaps.

One implementation (tile plan, shared normalization statistics, no-data, blending) with two entry points:

- ``translate_tiled(translator, image, tile, overlap, tile_batch=None, passes=2, valid=None)``: a CxHxW tensor
  in memory; returns (output CxHxW, heatmap 1 x H/4 x W/4, or None when the translator gives none);
- ``translate_rows(translator, source, tile, overlap, tile_batch, passes, write_rows, with_heatmap)``: a scene
  read a tile at a time (``source.height``, ``source.width``, ``source.rows(top, bottom, left, right)`` ->
  (Cxhxw tensor, hxw bool tensor of valid pixels or None)). Each band of output rows is handed to
  ``write_rows(top, rows, valid)`` as soon as no later tile overlaps it, so memory is bounded by the tiles in
  flight and one tile row of output, not by the scene. Returns the heatmap (or None).

The translator protocol: a callable on a CPU B x C x T x T batch in the model range ([-1, 1]; T is the tile
side; the translator moves it to its device) returning the B x output_nc x T x T output (on any device), or a
tuple whose first item is the output and whose third, if any, is a B x 1 x T/4 x T/4 heatmap (U-GAT-IT's
(output, cam_logit, heatmap)); with attributes ``generator`` (its torch module, with ``output_nc``; a module
and optionally ``size_multiple``: the factor its sides must be multiples of, default 4) and ``device``.
models.ugatit_inference.Translator is one, models.feedforward_generator.FeedForwardTranslator (the Gatys
feed-forward generator, output without attention: (output, None, None)) another.

Passes (``passes``, app.py's --tile_passes): 1 translates every tile on its own (each normalized with its own
statistics: level shifts between tiles, hidden by the blending). 2 (the default) first runs a statistics pass
(models.tile_statistics): the image's tiles, or a sample spread over the scene when they hold more than
``statistics_pixels``, run as one synchronized forward in which every normalization layer and global pool uses
statistics pooled over all of them, so the result equals the whole image's up to the border effect; the output
pass then translates the other tiles with those statistics and reuses the outputs of the sampled ones, so the
whole costs about one pass. For a scene larger than the sample, each pass beyond 2 is a sweep over every tile,
in synchronized groups of ``statistics_pixels`` spread over the scene whose sums are added (models.tile_statistics).
The first sweep makes the first pooled layer's statistics the whole scene's, and every later one the next
layer's as well, since a layer's statistics depend only on the layers before it: sweep k normalizes every tile
with the k exact ones and gathers the rest anew. So the statistics converge to the whole scene's, one layer a
sweep at the least; each sweep costs a pass. For an image that fits in the sample, 2 passes are exact and more
change nothing.

No-data: ``valid`` (HxW, True = valid) marks the valid pixels. Every tile's masked pixels are filled from its
valid pixels (data.radiometry.fill_masked: mirrored at the no-data edge), masked pixels are left out of the
pooled statistics, and tiles without a valid pixel are not translated. The output at masked pixels has no
meaning: writers store no-data there.
"""

import torch
import torch.nn.functional as F

from data.radiometry import fill_masked
from models.tile_statistics import PooledStatistics, TileRegion, pooled_layers
from models.ugatit_networks import BOTTLENECK_SCALE
from options.number_types import MAX_NETWORK_SIDE, batch_count, integer, real
from util.errors import SargenError

HEATMAP_SCALE = BOTTLENECK_SCALE
# Pixels of tiles the statistics pass runs together: images up to this size get the whole image's statistics
# exactly; larger ones a stratified sample of this size. Memory grows with it (see docs: scenes and tiling).
STATISTICS_PIXELS = 1_000_000
# Pixels of context each tile is translated with beyond its own part on every side it shares with a neighbour:
# they weigh nothing in the output. 32 keeps the border effect of a published-shape U-GAT-IT under a grey level.
TILE_CONTEXT = 32
EMIT_ROWS = 64  # output rows handed to write_rows at once


def add_tiling_options(parser, tile_help):
    """Add --tile (described by `tile_help`), --overlap, --tile_context, --tile_batch, --tile_passes and
    --statistics_megapixels to `parser`."""
    parser.add_argument("--tile", type=integer(0, MAX_NETWORK_SIDE), default=0, help=tile_help)
    parser.add_argument("--overlap", type=integer(0, MAX_NETWORK_SIDE), default=32,
                        help="pixels over which neighbouring tiles cross-fade (--tile)")
    parser.add_argument("--tile_context", type=integer(0, MAX_NETWORK_SIDE), default=TILE_CONTEXT,
                        help="pixels of its neighbours each tile is translated with on every side it shares with "
                             "one; they weigh nothing in the output, which so stays clear of the padding the "
                             "network sees at a tile's edges (--tile; the network's tiles are this much larger)")
    parser.add_argument("--tile_batch", type=batch_count, default=None,
                        help="tiles translated at once (bounds memory); default 4 on CUDA, 1 on the CPU")
    parser.add_argument("--tile_passes", type=integer(1, 64), default=2,
                        help="1: every tile normalized on its own (tiles disagree); 2: every normalization layer "
                             "and global pooling uses the whole image's statistics, gathered by translating all "
                             "tiles (or a sample of --statistics_megapixels) together: the output equals the "
                             "whole image's translation up to the border effect, for about the cost of one pass; "
                             "P > 2, for scenes larger than the sample: P - 2 sweeps over every tile bring the "
                             "statistics to the whole scene's, one more layer exact each sweep, a pass each")
    parser.add_argument("--statistics_megapixels", type=real(above=0, maximum=1e4), default=STATISTICS_PIXELS / 1e6,
                        help="megapixels of tiles translated together to gather the statistics (--tile_passes "
                             "> 1): images up to this size get their own exactly, larger ones a spread sample; "
                             "memory grows with it")


def tiling_arguments(opt):
    """translate_tiled's keyword arguments from the options add_tiling_options added (but tile and overlap)."""
    return {"tile_batch": opt.tile_batch, "passes": opt.tile_passes, "context": opt.tile_context,
            "statistics_pixels": int(opt.statistics_megapixels * 1e6)}


def size_multiple(generator):
    """The multiple of which a generator's input sides must be: its `size_multiple` (a U-Net's 2**levels), else 4."""
    return getattr(generator, "size_multiple", BOTTLENECK_SCALE)


def pooling_passes(generator, passes):
    """The passes a tiled translation makes: `passes`, or 1 when `generator` has no layer whose statistics the first
    passes would pool (batch normalization at eval is per-pixel: a tile is already normalized as the image)."""
    return passes if pooled_layers(generator) else 1


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


def tile_cores(starts, tile, length, multiple=BOTTLENECK_SCALE):
    """Each tile's own part of [0, length) as (first, stop) relative to the tile: split mid-overlap, on `multiple`."""
    bounds = [0]
    for previous, start in zip(starts, starts[1:]):
        middle = (start + previous + tile) // 2
        bounds.append(middle - middle % multiple)
    bounds.append(length)
    return [(first - start, stop - start) for start, first, stop in zip(starts, bounds, bounds[1:])]


def edge_ramp(length, overlap, context, leading, trailing):
    """A tile's blend weights along one axis: 0 over the `context` pixels at each edge shared with a neighbouring
    tile (`leading`, `trailing`), then rising from ~0 to 1 over `overlap` pixels; 1 at the image's borders."""
    ramp = torch.ones(length)
    edge = (torch.arange(overlap, dtype=torch.float32) + 0.5) / overlap if overlap else torch.ones(0)
    if leading:
        ramp[:context] = 0
        ramp[context: context + overlap] = edge
    if trailing:
        ramp[length - context:] = 0
        ramp[length - context - overlap: length - context] = torch.minimum(
            ramp[length - context - overlap: length - context], edge.flip(0))
    return ramp


def summed_ramps(starts, ramps, length):
    """The blend ramps of tiles starting at `starts`, added up along an axis of `length` pixels."""
    total = torch.zeros(length)
    for start, ramp in zip(starts, ramps):
        total[start: start + len(ramp)] += ramp
    return total


def spread(count, wanted):
    """`wanted` of the indices 0 .. count - 1, evenly spread (all of them when wanted >= count)."""
    if wanted >= count:
        return list(range(count))
    return [int((index + 0.5) * count / wanted) for index in range(wanted)]


class TilePlan:
    """Where the tiles of a height x width image go: rows and columns of starts, the part each tile owns (for the
    statistics) and its blend weights.

    Each tile the network translates is `tile` pixels plus `context` pixels of its neighbours on each side (no
    more than the image): the context pixels are translated but weigh nothing in the output, so every output
    pixel comes from at least `context` pixels inside a tile, away from the padding its convolutions see at the
    tile's edges (the border effect). Neighbouring tiles' weights cross-fade over `overlap` pixels. The image is
    padded (mirrored) at the bottom and right to a multiple of the network's down-sampling factor (its
    ``size_multiple``), and cropped back.
    """

    def __init__(self, height, width, tile, overlap, generator, context=0):
        """Check the tile size against `overlap` and `generator`, and plan the tiles."""
        multiple = size_multiple(generator)
        if tile % multiple or tile <= 2 * overlap or overlap < 0 or context < 0:
            raise SargenError(f"--tile {tile} must be a multiple of {multiple} and more than twice "
                              f"--overlap {overlap} (>= 0), and --tile_context {context} >= 0")
        context -= context % max(1, multiple // 2)  # so tiles with their context stay on the network's grid
        self.height, self.width, self.tile, self.overlap, self.context = height, width, tile, overlap, context
        self.multiple = multiple
        # Tiles start on multiples of the network's down-sampling factor, so that each tile's strided layers sample
        # the whole image's grid: the image is padded to a multiple of it and the stride rounded down to one.
        self.padded_height, self.padded_width = -(-height // multiple) * multiple, -(-width // multiple) * multiple
        self.tile_height = min(tile + 2 * context, self.padded_height)
        self.tile_width = min(tile + 2 * context, self.padded_width)
        stride = max(multiple, (tile - overlap) // multiple * multiple)
        self.row_starts = tile_starts(self.padded_height, self.tile_height, stride)
        self.column_starts = tile_starts(self.padded_width, self.tile_width, stride)
        # the padded image's, as the whole image's normalization statistics cover its padding (translate_whole)
        self.row_cores = tile_cores(self.row_starts, self.tile_height, self.padded_height, multiple)
        self.column_cores = tile_cores(self.column_starts, self.tile_width, self.padded_width, multiple)
        self.row_ramps = [edge_ramp(self.tile_height, overlap, context, row > 0, row < len(self.row_starts) - 1)
                          for row in range(len(self.row_starts))]
        self.column_ramps = [edge_ramp(self.tile_width, overlap, context, column > 0,
                                       column < len(self.column_starts) - 1)
                             for column in range(len(self.column_starts))]
        # The weights add up separably: a valid pixel's tiles are all translated (only tiles without a valid pixel
        # are left out), so its total weight is (rows' ramps summed) x (columns' ramps summed).
        self.row_weights = summed_ramps(self.row_starts, self.row_ramps, self.padded_height)
        self.column_weights = summed_ramps(self.column_starts, self.column_ramps, self.padded_width)

    def row_tiles(self, row):
        """(left, (core top, bottom, left, right), column ramp) of each tile of tile row `row`, left to right."""
        return [(left, self.row_cores[row] + column_core, ramp)
                for left, column_core, ramp in zip(self.column_starts, self.column_cores, self.column_ramps)]

    def group_tiles(self, pixels):
        """How many tiles a statistics group of `pixels` pixels holds (at least one)."""
        return max(1, pixels // (self.tile_height * self.tile_width))

    def statistics_sample(self, pixels):
        """The statistics pass's tiles: (rows in the order to read them, tiles to take from each row, tiles in all).

        Every tile when they hold at most `pixels`; else about that many pixels of tiles spread evenly over the
        rows and, within a row, over its tiles with valid pixels (rows after the spread ones stand in for rows
        without any).
        """
        rows, columns = len(self.row_starts), len(self.column_starts)
        wanted = self.group_tiles(pixels)
        if rows * columns <= wanted:
            return list(range(rows)), columns, rows * columns
        sample_rows = min(rows, max(1, round((wanted * rows / columns) ** 0.5)))
        per_row = min(columns, max(1, wanted // sample_rows))
        chosen = spread(rows, sample_rows)
        return chosen + [row for row in range(rows) if row not in chosen], per_row, sample_rows * per_row


def default_tile_batch(device):
    """Tiles per call: batches pay off on GPUs; on CPUs single tiles stay in cache and run faster."""
    return 4 if torch.device(device).type == "cuda" else 1


def output_and_heatmap(result):
    """(output, heatmap or None) of a translator's result: a tensor, or U-GAT-IT's (output, cam_logit, heatmap)."""
    if isinstance(result, torch.Tensor):
        return result, None
    return result[0], result[2] if len(result) > 2 else None


class MemorySource:
    """A CxHxW tensor (and its HxW valid mask) read a window at a time, as translate_rows reads scenes."""

    def __init__(self, image, valid=None):
        """Wrap `image` and `valid` (None: every pixel valid)."""
        self.image, self.valid = image, None if valid is None else torch.as_tensor(valid, dtype=torch.bool)
        self.height, self.width = image.shape[-2:]

    def rows(self, top, bottom, left=0, right=None):
        """Rows [top, bottom) of columns [left, right): (image window, valid window or None)."""
        return (self.image[:, top:bottom, left:right],
                None if self.valid is None else self.valid[top:bottom, left:right])


def translate_whole(translator, image):
    """Translate one CxHxW image at its own size (padded to the generator's multiple); return (output, heatmap)."""
    padded, (height, width) = pad_to_multiple(image, size_multiple(getattr(translator, "generator", None)))
    output, heatmap = output_and_heatmap(translator(padded[None]))
    return output[0, :, :height, :width], None if heatmap is None else heatmap[0]


def translate_tiled(translator, image, tile, overlap, tile_batch=None, passes=2, valid=None, context=TILE_CONTEXT,
                    statistics_pixels=STATISTICS_PIXELS):
    """Translate a CxHxW image of any size tile by tile, blending overlaps; return (output, heatmap).

    Tiles of `tile` pixels (translated with `context` more on each side: TilePlan) step by tile - overlap and
    are translated `tile_batch` at a time; each output tile is weighted by a window that fades out over the
    overlap, so neighbouring tiles cross-fade instead of meeting at a seam. `passes` and `statistics_pixels`:
    see the module docstring. Working memory grows with the tile batch and the statistics pass, not the image.
    `valid`: see above.
    """
    height, width = image.shape[-2:]
    output = None

    def keep_rows(top, rows, _valid):
        nonlocal output
        if output is None:
            output = torch.zeros(rows.shape[0], height, width)
        output[:, top: top + rows.shape[1]] = rows

    heatmap = translate_rows(translator, MemorySource(image, valid), tile, overlap, tile_batch, passes, keep_rows,
                             context=context, statistics_pixels=statistics_pixels)
    return output, heatmap


def statistics_groups(plan, statistics_pixels):
    """How many groups of `statistics_pixels` hold every tile of the plan (1: the whole image fits in one)."""
    return -(-len(plan.row_starts) * len(plan.column_starts) // plan.group_tiles(statistics_pixels))


def refinement_sweeps(plan, passes, statistics_pixels):
    """Sweeps over every tile between the sample pass and the output pass: passes - 2, none when one pass or when
    the whole image fits in the sample (its statistics are then exact already)."""
    return max(passes - 2, 0) if statistics_groups(plan, statistics_pixels) > 1 else 0


def tile_reads(plan, passes, statistics_pixels=STATISTICS_PIXELS):
    """How many tiles translate_rows reads (those of the sample pass when every tile row holds a valid pixel, of
    each refinement sweep, then every tile for the output), for progress bars."""
    tiles = len(plan.row_starts) * len(plan.column_starts)
    if passes == 1:
        return tiles
    order, per_row, total = plan.statistics_sample(statistics_pixels)
    sample = min(len(plan.row_starts), -(-total // per_row)) * len(plan.column_starts)
    return sample + tiles * (refinement_sweeps(plan, passes, statistics_pixels) + 1)


def translate_rows(translator, source, tile, overlap, tile_batch, passes, write_rows, with_heatmap=True,
                   context=TILE_CONTEXT, statistics_pixels=STATISTICS_PIXELS):
    """Translate a scene read band by band (see the module docstring), handing finished output rows on in order.

    Returns the heatmap (1 x ceil(H/4) x ceil(W/4)) when `with_heatmap` and the translator gives one, else None.
    """
    plan = TilePlan(source.height, source.width, tile, overlap, translator.generator, context)
    tile_batch = tile_batch or default_tile_batch(translator.device)
    passes = pooling_passes(translator.generator, passes)
    if passes == 1:
        return output_pass(translator, None, source, plan, tile_batch, write_rows, with_heatmap, {})
    with PooledStatistics(translator.generator, plan) as statistics:
        translated = gather_statistics(translator, statistics, sampled_tiles(source, plan, statistics_pixels),
                                       tile_batch)
        statistics.finish_groups()
        sweeps, groups = refinement_sweeps(plan, passes, statistics_pixels), statistics_groups(plan, statistics_pixels)
        if sweeps:
            translated = {}  # the sample's outputs used the sample's statistics, not the sweeps': not kept
        for sweep in range(sweeps):
            statistics.start_sweep(exact_calls=sweep)
            for group in range(groups):
                gather_statistics(translator, statistics, grouped_tiles(source, plan, group, groups), tile_batch)
            statistics.finish_groups()
        return output_pass(translator, statistics, source, plan, tile_batch, write_rows, with_heatmap, translated)


def sampled_tiles(source, plan, pixels):
    """The tiles of the statistics sample (TilePlan.statistics_sample): all of them when they fit in `pixels`."""
    order, per_row, total = plan.statistics_sample(pixels)
    tiles = []
    for row in order:
        if len(tiles) >= total:
            break
        candidates = [tile for tile in row_tiles(source, plan, row) if tile[1] is not None]
        tiles += [candidates[index] for index in spread(len(candidates), min(per_row, total - len(tiles)))]
    return [(region, image) for region, image, _ in tiles]


def z_order(row, column):
    """The position of (row, column) along the Z-order curve (bits interleaved): near positions, near tiles."""
    position = 0
    for bit in range(16):
        position |= ((row >> bit) & 1) << (2 * bit + 1) | ((column >> bit) & 1) << (2 * bit)
    return position


def grouped_tiles(source, plan, group, groups):
    """The tiles of group `group` of `groups`: the tiles dealt in turn to the groups along the Z-order curve, so
    each group is spread evenly over the scene."""
    rows, columns = len(plan.row_starts), len(plan.column_starts)
    order = sorted(((row, column) for row in range(rows) for column in range(columns)), key=lambda tile: z_order(*tile))
    mine = {tile for rank, tile in enumerate(order) if rank % groups == group}
    tiles = []
    for row in range(rows):
        wanted = [column for column in range(columns) if (row, column) in mine]
        if wanted:
            tiles += [(region, image) for region, image, _ in row_tiles(source, plan, row, wanted) if image is not None]
    return tiles


def gather_statistics(translator, statistics, tiles, tile_batch):
    """Translate `tiles` as one synchronized group forward (PooledStatistics.gather), `tile_batch` per sub-batch.

    Returns {(top, left): (output, heatmap or None)} of the tiles, normalized with the group's statistics.
    """
    if not tiles:
        return {}

    def translate_sub_batch(party, batch):
        statistics.use_regions([region for region, _ in batch], party)
        return output_and_heatmap(translator(torch.stack([image for _, image in batch])))

    results = statistics.gather(translate_sub_batch, batched(tiles, tile_batch))
    translated = {}
    for batch, (outputs, heatmaps) in zip(batched(tiles, tile_batch), results):
        for index, (region, _) in enumerate(batch):
            translated[region.top, region.left] = (outputs[index], None if heatmaps is None else heatmaps[index])
    return translated


def output_pass(translator, statistics, source, plan, tile_batch, write_rows, with_heatmap, translated):
    """Translate every tile (but those in `translated`, reused) and blend them into rows handed to `write_rows`."""
    blender = Blender(plan, translator.generator.output_nc, write_rows, with_heatmap)
    for row in range(len(plan.row_starts)):
        blender.start_row(row)
        remaining = []
        for region, image, valid in row_tiles(source, plan, row):
            blender.add_valid(region.left, valid)
            if image is None:
                continue
            done = translated.pop((region.top, region.left), None)
            if done is None:
                remaining.append((region, image))
            else:
                blender.add_tile(region.left, *done)
        for batch in batched(remaining, tile_batch):
            outputs, heatmaps = run_batch(translator, statistics, batch)
            for index, (region, _) in enumerate(batch):
                blender.add_tile(region.left, outputs[index], None if heatmaps is None else heatmaps[index])
    return blender.finish()


def read_tile(source, plan, top, left):
    """The tile at (top, left) as (C x tile_height x tile_width float tensor, its valid mask or None), mirrored
    past the bottom and right edges of the image as pad_to_multiple pads the whole image."""
    bottom, right = min(top + plan.tile_height, source.height), min(left + plan.tile_width, source.width)
    image, valid = source.rows(top, bottom, left, right)
    pad_bottom, pad_right = top + plan.tile_height - bottom, left + plan.tile_width - right
    if pad_bottom or pad_right:
        # mirrored as the networks pad their borders (and pad_to_multiple the whole image), repeated when too small
        mode = "reflect" if pad_bottom < image.shape[-2] and pad_right < image.shape[-1] else "replicate"
        image = F.pad(image[None].float(), (0, pad_right, 0, pad_bottom), mode=mode)[0]
        if valid is not None:
            valid = F.pad(valid[None, None].float(), (0, pad_right, 0, pad_bottom), mode=mode)[0, 0].bool()
    return image.float(), valid


def row_tiles(source, plan, row, columns=None):
    """(TileRegion, tile image filled where masked or None without a valid pixel, valid mask or None) of each tile
    of tile row `row` (or of its tiles at the indexes `columns`), read from `source`."""
    tiles = []
    top = plan.row_starts[row]
    for column, (left, core, _) in enumerate(plan.row_tiles(row)):
        if columns is not None and column not in columns:
            continue
        image, valid = read_tile(source, plan, top, left)
        if valid is not None:
            if bool(valid.all()):
                valid = None
            elif bool(valid.any()):
                image = fill_masked(image, valid.numpy())
            else:
                image = None
        tiles.append((TileRegion(top, left, core, valid, plan.tile_width), image, valid))
    return tiles


def batched(items, size):
    """`items` in lists of up to `size`."""
    return [items[first: first + size] for first in range(0, len(items), size)]


def run_batch(translator, statistics, batch):
    """Translate a batch of (region, image) tiles, telling the statistics hooks (if any) where the tiles lie."""
    if statistics is not None:
        statistics.use_regions([region for region, _ in batch])
    return output_and_heatmap(translator(torch.stack([image for _, image in batch])))


def shift_up(canvas, shift, empty):
    """Move the rows of a (... x rows x columns) canvas `shift` rows up in place, filling the freed rows with
    `empty` (in blocks of `shift` rows, which never overlap: no second canvas)."""
    rows = canvas.shape[-2]
    if shift <= 0:
        return
    for first in range(0, rows - shift, shift):
        stop = min(first + shift, rows - shift)
        canvas[..., first:stop, :] = canvas[..., first + shift: stop + shift, :]
    canvas[..., max(rows - shift, 0):, :] = empty


class Blender:
    """Cross-fades translated tiles into a band of output rows and hands finished rows on, in order."""

    def __init__(self, plan, output_nc, write_rows, with_heatmap):
        """Output and valid-mask canvases one tile row high; the heatmap canvas for the whole (quarter-size) image."""
        self.plan, self.write_rows = plan, write_rows
        self.output = torch.zeros(output_nc, plan.tile_height, plan.padded_width)
        self.valid = torch.ones(plan.tile_height, plan.padded_width, dtype=torch.bool)
        self.top, self.written, self.row_ramp = 0, 0, None
        self.column_ramps = dict(zip(plan.column_starts, plan.column_ramps))
        self.with_heatmap, self.heatmap, self.heat_weights = with_heatmap, None, None

    def start_row(self, row):
        """Hand on the rows no tile of row `row` or later overlaps, and move the canvases down to its top."""
        top = self.plan.row_starts[row]
        self.emit(top)
        for canvas, empty in ((self.output, 0), (self.valid, True)):
            shift_up(canvas, top - self.top, empty)
        self.top, self.row_ramp = top, self.plan.row_ramps[row]

    def add_valid(self, left, valid):
        """Record the valid mask (None: all valid) of the current row's tile starting at column `left`."""
        if valid is not None or not bool(self.valid[:, left: left + self.plan.tile_width].all()):
            self.valid[:, left: left + self.plan.tile_width] = True if valid is None else valid

    def add_tile(self, left, output, heatmap):
        """Add a translated tile of the current row starting at column `left`, weighted by its blend window."""
        window = self.row_ramp[:, None] * self.column_ramps[left][None, :]
        width = self.plan.tile_width
        self.output[:, :, left: left + width] += output.float().cpu() * window
        if self.with_heatmap and heatmap is not None:
            self.add_heatmap(left, heatmap.float().cpu(), window)

    def add_heatmap(self, left, heatmap, window):
        """Add a tile's heatmap to the quarter-size heatmap canvas."""
        plan, scale = self.plan, HEATMAP_SCALE
        if self.heatmap is None:
            self.heatmap = torch.zeros(1, plan.padded_height // scale + 1, plan.padded_width // scale + 1)
            self.heat_weights = torch.zeros_like(self.heatmap)
        heat_window = window[::scale, ::scale]
        heat_top, heat_left = self.top // scale, left // scale
        height, width = heat_window.shape
        self.heatmap[:, heat_top: heat_top + height, heat_left: heat_left + width] += heatmap * heat_window
        self.heat_weights[:, heat_top: heat_top + height, heat_left: heat_left + width] += heat_window

    def emit(self, stop):
        """Hand on the finished rows [written, stop) of the image (the canvas starts at self.top), EMIT_ROWS at a
        time (what the writer converts at once stays small, however wide the scene)."""
        stop, width = min(stop, self.plan.height), self.plan.width
        while self.written < stop:
            first = self.written - self.top
            last = min(stop, self.written + EMIT_ROWS) - self.top
            weights = self.plan.row_weights[self.written: last + self.top, None] * self.plan.column_weights[:width]
            rows = self.output[:, first:last, :width] / weights.clamp_min(1e-12)
            valid = self.valid[first:last, :width]
            self.write_rows(self.written, rows, None if bool(valid.all()) else valid)
            self.written = last + self.top

    def finish(self):
        """Hand on the last rows; return the heatmap (cropped to the image) or None."""
        self.emit(self.plan.height)
        if self.heatmap is None:
            return None
        scale, plan = HEATMAP_SCALE, self.plan
        heatmap = self.heatmap / self.heat_weights.clamp_min(1e-12)
        return heatmap[:, : -(-plan.height // scale), : -(-plan.width // scale)]
