"""Visual helpers shared by test results, training display and app.py: attention heatmaps as colour maps."""

import torch
import torch.nn.functional as F

HEATMAP_ALPHA = 0.5


def jet_colormap(values):
    """Map an HxW tensor of values in [0, 1] to a 3xHxW RGB tensor in [0, 1] (the 'jet' colour map)."""
    values = values.clamp(0.0, 1.0)
    red = (1.5 - (4.0 * values - 3.0).abs()).clamp(0.0, 1.0)
    green = (1.5 - (4.0 * values - 2.0).abs()).clamp(0.0, 1.0)
    blue = (1.5 - (4.0 * values - 1.0).abs()).clamp(0.0, 1.0)
    return torch.stack([red, green, blue])


def normalize_heatmap(heatmap, size):
    """Scale a 1xhxw heatmap to [0, 1] (its own min and max) and resize it bilinearly to `size` (H, W)."""
    heatmap = heatmap.detach().float().cpu()
    heatmap = heatmap - heatmap.min()
    peak = heatmap.max()
    heatmap = heatmap / peak if peak > 0 else heatmap
    resized = F.interpolate(heatmap[None], size=tuple(size), mode="bilinear", align_corners=False)[0, 0]
    return resized.clamp(0.0, 1.0)


def heatmap_overlay(heatmap, image, alpha=HEATMAP_ALPHA):
    """A CAM heatmap (1xhxw) as a jet colour map blended over `image` (CxHxW in [-1, 1]); 3xHxW in [-1, 1]."""
    image = image.detach().float().cpu()
    colours = jet_colormap(normalize_heatmap(heatmap, image.shape[-2:]))
    grey_or_rgb = (image.expand(3, -1, -1) + 1.0) / 2.0
    blended = alpha * colours + (1.0 - alpha) * grey_or_rgb
    return blended * 2.0 - 1.0
