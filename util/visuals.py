"""Visual helpers shared by test results, training display (HTML and visdom) and app.py: how an image of any
channel count is shown (grey, RGB, dual-pol SAR false colour) and attention heatmaps as colour maps.

False colour of 2-channel (dual-polarization SAR) images, as Sentinel-1 quicklooks: R = band 1 (VV, or HH),
G = band 2 (VH, or HV), B = their ratio band 1 / band 2 (the dB difference), each through its own dB window
(FALSE_COLOUR_WINDOWS_DB). The bands' model values are turned back into dB through the domain's --db_window
(the window of the db rule; for other rules the values are taken as spanning that window, -25..0 by default).
Images of 4 or more channels show their first three as R, G, B (order --bands accordingly, e.g. 4,3,2,8).
"""

import torch
import torch.nn.functional as F

from data.radiometry import DEFAULT_SCALING

HEATMAP_ALPHA = 0.5
# dB windows of the false-colour channels: R band 1 (co-pol), G band 2 (cross-pol), B ratio band 1 / band 2.
FALSE_COLOUR_WINDOWS_DB = ((-25.0, 0.0), (-30.0, -5.0), (0.0, 15.0))


def display_image(image, radiometry=None, value_range=(-1.0, 1.0)):
    """A CxHxW image in `value_range` as 1 (grey) or 3 (RGB) channels in the same range, for pages and 8-bit files.

    1 and 3 channels are shown as they are, 2 in dual-pol false colour, 4 or more by their first three.
    """
    channels = image.shape[0]
    if display_channel_count(channels) == channels:
        return image
    if channels > 3:
        return image[:3]
    return false_colour(image, radiometry, value_range)


def display_channel_count(channels):
    """How many channels display_image shows an image of `channels` channels with (1 or 3)."""
    return channels if channels in (1, 3) else 3


def false_colour(image, radiometry=None, value_range=(-1.0, 1.0)):
    """A 2xHxW dual-pol SAR image as 3xHxW: R = band 1, G = band 2, B = band 1 / band 2, each in its dB window."""
    low, high = value_range
    unit = ((image.detach().float().cpu() - low) / (high - low)).clamp(0.0, 1.0)
    window_low, window_high = (radiometry or DEFAULT_SCALING).db_window
    db = window_low + unit * (window_high - window_low)
    planes = (db[0], db[1], db[0] - db[1])
    rgb = torch.stack([((plane - plane_low) / (plane_high - plane_low)).clamp(0.0, 1.0)
                       for plane, (plane_low, plane_high) in zip(planes, FALSE_COLOUR_WINDOWS_DB)])
    return rgb * (high - low) + low


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
    """A CAM heatmap (1xhxw) as a jet colour map blended over `image` (CxHxW in [-1, 1], shown by display_image,
    so render multi-band images with their radiometry first); 3xHxW in [-1, 1]."""
    image = display_image(image.detach().float().cpu())
    colours = jet_colormap(normalize_heatmap(heatmap, image.shape[-2:]))
    grey_or_rgb = (image.expand(3, -1, -1) + 1.0) / 2.0
    blended = alpha * colours + (1.0 - alpha) * grey_or_rgb
    return blended * 2.0 - 1.0


def error_map(error, full_scale, valid=None):
    """An HxW map of absolute errors as a jet colour map from 0 (blue) to `full_scale` and over (red), pixels
    outside `valid` (HxW bool, None: all) black; 3xHxW in [-1, 1]."""
    colours = jet_colormap(error.detach().float().cpu() / full_scale)
    if valid is not None:
        colours = colours * valid.to(colours.dtype)
    return colours * 2.0 - 1.0
