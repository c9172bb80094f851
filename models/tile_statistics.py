"""The tiler's image-wide statistics: every tile normalized and pooled as the whole image would be.

A generator's output at a pixel depends on the whole image through its data-dependent layers: normalization
layers (nn.InstanceNorm2d without running statistics, with or without affine, and U-GAT-IT's AdaLIN and LIN)
normalize with statistics over all pixels, and global pooling modules (models.ugatit_networks.GridAveragePool:
the light generator's gamma/beta MLP input, a full generator's grid of cell means, the attention's average;
GlobalMaxPool: the attention's maximum) feed image-wide values on. While the tiler runs, those layers (found by
type) compute their output with the image's statistics instead of the tile's own (their forward is replaced, so
the tile's own normalization is neither computed nor held).

The image's statistics of layer k depend on those of the layers before it, so they cannot be gathered layer by
layer in passes over tiles that each normalize with the previous pass's values: that is a fixed-point iteration
exact only after (pooled layers + 1) passes, and farther from the whole image than one pass on the way. Here the
statistics are gathered *batch-synchronously* instead: a group of tiles (all of an image that fits the sample
budget, else a stratified sample) runs as one forward in which every pooled layer pools its inputs over the
valid pixels of every tile's own part (its core), then normalizes every tile with them, so the layers after it
see what the whole image's forward would give them: all layers' statistics in one forward, exact up to the
border effect (convolutions near a tile's edge see padding instead of the neighbouring pixels). To bound its
memory the group runs in sub-batches, each in a thread, one at a time: they meet at every pooled layer
(SynchronizedGroup), so a paused tile holds only its activations at that layer, not a forward's peak.

A scene too large for one group (beyond the first, sampled pass) is gathered in sweeps over every tile, each in
several groups spread over the scene whose sums are added. In sweep k the first k pooled-layer calls use the
statistics already exact (the whole scene's) and the later ones the group's own; the sums of call k are then
exact, since a layer's statistics depend only on the layers before it. The first sweep is the union of the
groups' statistics, to first order the union's own fixed point (the groups being spread samples of one scene,
their differences are small); each further sweep makes one more call exact. Between groups and after them,
every tile is normalized with the stored values.
"""

import dataclasses
import functools
import threading

import torch
import torch.nn.functional as F
from torch import nn

from models.ugatit_networks import (
    AdaptiveInstanceLayerNorm,
    GlobalMaxPool,
    GridAveragePool,
    InstanceLayerNorm,
    blended_scale_and_shift,
    scaled_and_shifted,
)

NORMALIZATION_TYPES = (AdaptiveInstanceLayerNorm, InstanceLayerNorm, nn.InstanceNorm2d)
POOLING_TYPES = (GridAveragePool, GlobalMaxPool)


def is_pooled_layer(module):
    """Whether a module's output depends on statistics over the whole image (so the tiler pools it)."""
    if isinstance(module, NORMALIZATION_TYPES):
        return not getattr(module, "track_running_stats", False)
    return isinstance(module, POOLING_TYPES)


def pooled_layers(generator):
    """The layers of `generator` whose output depends on statistics over the whole image (those the tiler pools)."""
    return [module for module in generator.modules() if is_pooled_layer(module)]


@dataclasses.dataclass
class TileRegion:
    """Where a tile lies in the image: its top-left pixel, its own part (core, relative to the tile) and mask."""

    top: int
    left: int
    core: tuple  # (top, bottom, left, right) relative to the tile
    valid: torch.Tensor | None  # the tile's bool mask, None: every pixel valid
    width: int  # the tile's width in pixels (its feature maps' scale is width / their width)
    masks: dict = dataclasses.field(default_factory=dict)  # the core's valid mask per feature scale

    def scale(self, features):
        """How many image pixels a feature pixel of `features` (... x h x w, of this tile) spans on a side."""
        return self.width // features.shape[-1]

    def core_features(self, features, scale):
        """The features of the core at `scale` (C x h x w), its valid mask (h x w, or None) and its first row and
        column in the image's feature map."""
        top, bottom, left, right = (bound // scale for bound in self.core)
        core = features[:, top:bottom, left:right]
        return core, self.core_mask(scale, (top, bottom, left, right)), (self.top // scale + top,
                                                                         self.left // scale + left)

    def core_mask(self, scale, bounds):
        """The core's valid feature pixels at `scale` (any valid image pixel under one counts), or None."""
        if self.valid is None:
            return None
        if scale not in self.masks:
            valid = self.valid[None, None].float()
            valid = F.max_pool2d(valid, scale)[0, 0] if scale > 1 else valid[0, 0]
            top, bottom, left, right = bounds
            self.masks[scale] = valid[top:bottom, left:right].bool()
        return self.masks[scale]


def cell_matrix(grid, length, first, count):
    """Which of `grid` adaptive-pooling cells over [0, length) each of positions first .. first + count - 1 is in
    (grid x count, float64): cell i spans [floor(i L / grid), ceil((i + 1) L / grid)), as F.adaptive_avg_pool2d."""
    positions = torch.arange(first, first + count)
    cells = torch.arange(grid)[:, None]
    starts, stops = (cells * length) // grid, -((-(cells + 1) * length) // grid)
    return ((positions >= starts) & (positions < stops)).double()


class Moments:
    """A normalization layer's per-channel pixel count, sum and sum of squares, and its formula applied with them."""

    @staticmethod
    def partial(features, regions, plan):
        """(count, per-channel sum, per-channel sum of squares) over the tiles' valid core pixels (float64)."""
        count, total, squares = 0, 0.0, 0.0
        scale = regions[0].scale(features)
        for sample, region in enumerate(regions):
            core, valid, _ = region.core_features(features[sample].float(), scale)
            if valid is not None:
                core = core[:, valid.to(core.device)][:, :, None]
            pixels = core.shape[1] * core.shape[2]
            if not pixels:
                continue
            # per-channel variance and mean reduced over the view (no copy of the core), then sums in float64
            variance, mean = torch.var_mean(core, dim=(1, 2), correction=0)
            count += pixels
            total = total + mean.double() * pixels
            squares = squares + (variance.double() + mean.double().square()) * pixels
        return count, total, squares

    @staticmethod
    def combine(first, second):
        """The moments of two sets of pixels together."""
        return tuple(a + b for a, b in zip(first, second))

    @staticmethod
    def finish(moments, plan):
        """Per-channel mean, biased and unbiased variance maps, and the layer's mean and unbiased variance."""
        count, total, squares = moments
        channels = total.numel()
        mean = total / count
        biased = (squares / count - mean.square()).clamp_min(0)
        layer_mean = total.sum() / (count * channels)
        layer_var = ((squares.sum() - count * channels * layer_mean**2) / (count * channels - 1)).clamp_min(0)
        as_map = lambda values: values.float().view(1, -1, 1, 1)  # noqa: E731
        return (as_map(mean), as_map(biased), as_map(biased * count / max(count - 1, 1)), layer_mean.float(),
                layer_var.float())

    @staticmethod
    def output(module, inputs, statistics):
        """The layer's output computed with the given statistics (the formulas of InstanceNorm2d, AdaLIN, LIN)."""
        mean, biased_var, unbiased_var, layer_mean, layer_var = statistics
        features = inputs[0].float()
        if isinstance(module, nn.InstanceNorm2d):
            scale = torch.rsqrt(biased_var + module.eps)
            shift = -mean * scale
            if module.affine:
                weight = module.weight.float().view(1, -1, 1, 1)
                scale, shift = scale * weight, shift * weight + module.bias.float().view(1, -1, 1, 1)
            return torch.addcmul(shift, features, scale)
        scale, shift = blended_scale_and_shift((mean, unbiased_var, layer_mean, layer_var), module.rho, module.eps)
        if isinstance(module, AdaptiveInstanceLayerNorm):
            gamma, beta = inputs[1].float()[:, :, None, None], inputs[2].float()[:, :, None, None]
            return scaled_and_shifted(features, scale, shift, gamma, beta)
        return scaled_and_shifted(features, scale, shift, module.gamma, module.beta)


class CellMeans:
    """A GridAveragePool's per-cell sums and counts over the image's feature map, and their means."""

    @staticmethod
    def partial(features, regions, plan, grid):
        """(counts grid x grid, sums C x grid x grid) of the tiles' valid core pixels, in the image's cells."""
        scale = regions[0].scale(features)
        height, width = plan.padded_height // scale, plan.padded_width // scale
        device = features.device
        counts = torch.zeros(grid, grid, dtype=torch.float64, device=device)
        sums = torch.zeros(features.shape[1], grid, grid, dtype=torch.float64, device=device)
        for sample, region in enumerate(regions):
            core, valid, (row, column) = region.core_features(features[sample].float(), scale)
            rows = cell_matrix(grid, height, row, core.shape[1]).to(device)
            columns = cell_matrix(grid, width, column, core.shape[2]).to(device)
            weight = torch.ones(core.shape[1:], device=device) if valid is None else valid.to(device).float()
            counts += (rows @ weight.double() @ columns.T)
            sums += torch.einsum("gh,chw,kw->cgk", rows.float(), core * weight, columns.float()).double()
        return counts, sums

    combine = Moments.combine

    @staticmethod
    def finish(cells, plan):
        """The 1 x C x grid x grid cell means; a cell no pooled pixel fell in takes the mean of all cells."""
        counts, sums = cells
        means = sums / counts.clamp_min(1)
        empty = counts == 0
        if bool(empty.any()):
            overall = sums.sum(dim=(1, 2)) / counts.sum().clamp_min(1)
            means = torch.where(empty, overall[:, None, None], means)
        return means.float()[None]

    @staticmethod
    def output(module, inputs, means):
        """The stored cell means for every tile of the batch."""
        return means.to(inputs[0].device).expand(inputs[0].shape[0], -1, -1, -1)


class ChannelMaxima:
    """A GlobalMaxPool's per-channel maximum over the image."""

    @staticmethod
    def partial(features, regions, plan):
        """The per-channel maximum over the tiles' valid core pixels (-inf where none)."""
        scale = regions[0].scale(features)
        maxima = torch.full((features.shape[1],), -torch.inf, device=features.device)
        for sample, region in enumerate(regions):
            core, valid, _ = region.core_features(features[sample].float(), scale)
            core = core.flatten(1) if valid is None else core[:, valid.to(core.device)]
            if core.shape[1]:
                maxima = torch.maximum(maxima, core.amax(dim=1))
        return maxima

    @staticmethod
    def combine(first, second):
        """The maxima of two sets of pixels together."""
        return torch.maximum(first, second)

    @staticmethod
    def finish(maxima, plan):
        """The 1 x C x 1 x 1 maxima."""
        return maxima.view(1, -1, 1, 1)

    @staticmethod
    def output(module, inputs, maxima):
        """The stored maxima for every tile of the batch."""
        return maxima.to(inputs[0].device).expand(inputs[0].shape[0], -1, -1, -1)


def statistic_of(module):
    """The statistic kind of a pooled layer, with the module's settings bound."""
    if isinstance(module, GridAveragePool):
        return dataclasses.replace(KIND_CELL_MEANS, partial=functools.partial(CellMeans.partial, grid=module.grid))
    return KIND_MAXIMA if isinstance(module, GlobalMaxPool) else KIND_MOMENTS


@dataclasses.dataclass(frozen=True)
class StatisticKind:
    """How one kind of pooled layer sums its inputs over tiles, combines sums, finishes them and uses them."""

    partial: object
    combine: object
    finish: object
    output: object


KIND_MOMENTS = StatisticKind(Moments.partial, Moments.combine, Moments.finish, Moments.output)
KIND_CELL_MEANS = StatisticKind(CellMeans.partial, CellMeans.combine, CellMeans.finish, CellMeans.output)
KIND_MAXIMA = StatisticKind(ChannelMaxima.partial, ChannelMaxima.combine, ChannelMaxima.finish, ChannelMaxima.output)


class SynchronizedGroup:
    """Sub-batches of one group forward, each in its own thread, one running at a time, meeting at every pooled layer.

    At a meeting each sub-batch leaves its partial sums; when all have, the last one in pools them (`pool`), and
    all go on with the image-wide values. Only one sub-batch computes at a time, so memory holds one forward's
    working set plus each paused sub-batch's activations at the pooled layer.
    """

    def __init__(self, parties, pool):
        """A group of `parties` sub-batches; `pool(partials)` runs once per meeting, on the list of partials."""
        self.partials = [None] * parties
        self.turn = threading.Lock()
        self.barrier = threading.Barrier(parties, action=lambda: pool(self.partials))

    def meet(self, party, partial):
        """Leave `partial`, wait (letting the others run) until every party has left its own, and go on."""
        self.partials[party] = partial
        self.turn.release()
        try:
            self.barrier.wait()
        finally:
            self.turn.acquire()

    def run(self, work, items):
        """Run work(party, item) for each item in its own thread, one at a time; return the results in order."""
        results, errors = [None] * len(items), []

        def party_thread(party, item):
            with self.turn:
                try:
                    results[party] = work(party, item)
                except BaseException as error:  # noqa: BLE001 - handed to the caller below
                    errors.append(error)
                    self.barrier.abort()  # the others stop waiting for this party

        threads = [threading.Thread(target=party_thread, args=(party, item), daemon=True)
                   for party, item in enumerate(items)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        first = next((error for error in errors if not isinstance(error, threading.BrokenBarrierError)), None)
        if first is not None or errors:
            raise first or errors[0]
        return results


class PooledStatistics:
    """Makes every pooled layer of a generator use the whole image's statistics (module docstring) while entered.

    Values are kept by call order within one forward (the k-th pooled-layer call), so a layer called twice in a
    forward gets each call's own. Each forward is told its tiles' regions (use_regions) in its own thread.
    """

    def __init__(self, generator, plan):
        """Prepare the pooled layers of `generator` for the tiles of TilePlan `plan`."""
        self.layers = pooled_layers(generator)
        self.plan = plan
        self.stored, self.sums, self.group = [], [], None
        self.exact = []  # the statistics of the first pooled-layer calls known to be the whole scene's (sweeps)
        self.local = threading.local()

    def __enter__(self):
        """Replace the pooled layers' forward (an instance attribute over the class's method)."""
        for layer in self.layers:
            layer.forward = functools.partial(self.pooled_forward, statistic_of(layer), layer)
        return self

    def __exit__(self, *exc_info):
        """Give the pooled layers their own forward back."""
        for layer in self.layers:
            del layer.forward

    def use_regions(self, regions, party=0):
        """The regions of the tiles of the next forward in this thread (and its party in a synchronized group)."""
        self.local.regions, self.local.calls, self.local.party = regions, 0, party

    def pooled_forward(self, kind, module, *inputs):
        """In a group's forward, pool this call's statistics over the group; return the output with the stored ones."""
        call = self.local.calls
        self.local.calls += 1
        if self.group is not None:
            self.group.meet(self.local.party, (kind, kind.partial(inputs[0], self.local.regions, self.plan)))
        return kind.output(module, inputs, self.stored[call])

    def pool_meeting(self, partials):
        """A group's meeting: combine the parties' (kind, partial), store the finished values for the group's own
        forward and add the group's sums to those of the groups before it."""
        kind = partials[0][0]
        pooled = functools.reduce(kind.combine, [partial for _, partial in partials])
        call = len(self.stored)
        self.stored.append(self.exact[call] if call < len(self.exact) else kind.finish(pooled, self.plan))
        if call < len(self.sums):
            self.sums[call] = (kind, kind.combine(self.sums[call][1], pooled))
        else:
            self.sums.append((kind, pooled))

    def gather(self, run, sub_batches):
        """Run `run(party, sub_batch)` for each sub-batch of one group as one synchronized forward.

        The group's tiles are normalized with the group's statistics (returned results use them); its sums are
        added to those of earlier groups (finish_groups).
        """
        self.stored = []
        self.group = SynchronizedGroup(len(sub_batches), self.pool_meeting)
        try:
            return self.group.run(run, sub_batches)
        finally:
            self.group = None

    def finish_groups(self):
        """Store the statistics of all the groups gathered so far together, for the output pass."""
        self.stored = self.exact + [kind.finish(total, self.plan) for kind, total in self.sums[len(self.exact):]]

    def start_sweep(self, exact_calls):
        """Begin a sweep over every tile of a scene in groups, the first `exact_calls` pooled-layer calls' statistics
        (those finished so far) being the whole scene's: every group is normalized with them there and pools the
        later calls itself, and the sums of those are gathered anew."""
        self.exact, self.sums = self.stored[:exact_calls], []
