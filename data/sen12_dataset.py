"""SEN1-2: Sentinel-2 RGB (domain A) and Sentinel-1 VV (domain B) 8-bit PNG patches, paired by patch.

Layout: the SEN12MS naming with PNG files (e.g. ROIs1158_spring/s1_1/ROIs1158_spring_s1_1_p30.png and
ROIs1158_spring/s2_1/ROIs1158_spring_s2_1_p30.png); split by scene, unpaired for training and paired for testing,
as data/sen12ms_dataset.py describes.

Defaults: SEN1-2 stores 8-bit images (Sentinel-2 true-colour RGB; Sentinel-1 VV dB already scaled to 0..255), so
both domains are read as value / 255 (the auto rule): domain A with 3 channels, domain B with 1.
"""

from data.sen12ms_dataset import SEN12MSDataset


class SEN12Dataset(SEN12MSDataset):
    """Sentinel-2 / Sentinel-1 PNG patches of a SEN1-2 tree."""

    mode = "sen12"
    suffixes = (".png",)
    other_mode = ("sen12ms", (".tif", ".tiff"))
    radiometry_defaults = {"A": {"intensity_scaling": "auto"}, "B": {"intensity_scaling": "auto"}}
    channel_defaults = {"input_nc": 3, "output_nc": 1}
