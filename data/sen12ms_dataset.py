"""SEN12MS and SEN12MS-CR: Sentinel-2 (domain A) and Sentinel-1 (domain B) GeoTIFF patches, paired by patch.

Layout (found anywhere under --dataroot, file names and their folder checked):
    ROIs<id>_<season>/s1_<scene>/ROIs<id>_<season>_s1_<scene>_p<patch>.tif    Sentinel-1, domain B
    ROIs<id>_<season>/s2_<scene>/ROIs<id>_<season>_s2_<scene>_p<patch>.tif    Sentinel-2, domain A
SEN12MS-CR keeps the same names under ROIs<id>_<season>_s1/ and ROIs<id>_<season>_s2/; cloudy Sentinel-2
(s2_cloudy_<scene>) and land-cover (lc_<scene>) folders are left out.

A scene is ROIs<id>_<season>_<scene>. The train/test split is by scene (data/scene_split.py). Training items are
unpaired (an S2 patch and an independently drawn S1 patch, as U-GAT-IT trains), or co-registered pairs for a
model that learns from pairs (pix2pix); test items hold the source patch and its co-registered partner of the
other sensor, for the paired test page and metrics.

Defaults (printed at start; every --NAME / --NAME_A / --NAME_B option overrides them): domain A = Sentinel-2
RGB from bands 4,3,2 (B4 red, B3 green, B2 blue) with a per-image 2..98 percentile stretch, 3 channels;
domain B = Sentinel-1 VV and VH in dB (SEN12MS stores dB) in the -25..0 dB window, 2 channels.
"""

import logging
import os
import re
from pathlib import Path

from data.base_dataset import EvaluationSets, test_split_options
from data.image_io import is_image_file
from data.radiometry import set_radiometry_defaults
from data.scene_split import add_split_options, phase_scenes
from data.unaligned_dataset import UnalignedDataset
from util.errors import SargenError

logger = logging.getLogger("sargen")

PATCH_NAME = re.compile(r"^ROIs(?P<roi>\d+)_(?P<season>[A-Za-z]+)_(?P<sensor>s1|s2)_(?P<scene>\d+)_p(?P<patch>\d+)"
                        r"(?P<suffix>\.\w+)$")
SENSOR_OF_DOMAIN = {"A": "s2", "B": "s1"}
SENSOR_NAMES = {"s1": "Sentinel-1", "s2": "Sentinel-2"}


def scene_of(match):
    """The scene id ROIs<id>_<season>_<scene> of a matched patch file name."""
    return f"ROIs{match['roi']}_{match['season']}_{match['scene']}"


class SEN12MSDataset(UnalignedDataset):
    """Sentinel-2 / Sentinel-1 patches of a SEN12MS-layout tree, split by scene, unpaired for training."""

    mode = "sen12ms"
    suffixes = (".tif", ".tiff")
    other_mode = ("sen12", (".png",))
    radiometry_defaults = {
        "A": {"bands": (4, 3, 2), "intensity_scaling": "percentile", "percentiles": (2.0, 98.0)},
        "B": {"bands": (1, 2), "intensity_scaling": "db", "input_unit": "db", "db_window": (-25.0, 0.0)},
    }
    channel_defaults = {"input_nc": 3, "output_nc": 2}

    @classmethod
    def modify_commandline_options(cls, parser, is_train):
        """Add the split options; default to this layout's radiometry and channels."""
        add_split_options(parser)
        set_radiometry_defaults(parser, cls.radiometry_defaults, f"the {cls.mode} layout's")
        parser.set_defaults(**cls.channel_defaults)
        return parser

    @classmethod
    def layout(cls):
        """The expected path pattern, for messages."""
        suffix = cls.suffixes[0]
        return (f"ROIs<id>_<season>/s1_<scene>/ROIs<id>_<season>_s1_<scene>_p<patch>{suffix} and "
                f".../s2_<scene>/ROIs<id>_<season>_s2_<scene>_p<patch>{suffix}")

    @classmethod
    def evaluation_sets(cls, opt):
        """The test split's patches of both sensors (by scene, as test.py reads them), each source patch paired
        with the other sensor's patch of the same scene and patch number (--eval_freq)."""
        dataset = cls(test_split_options(opt))
        targets = dataset.list_domains((dataset.target,))[dataset.target]
        sensors = {domain: f"{SENSOR_NAMES[SENSOR_OF_DOMAIN[domain]]} patches"
                   for domain in (dataset.source, dataset.target)}
        where = f"the '{dataset.opt.phase}' scenes of {dataset.root}"
        return EvaluationSets(dataset.paths[dataset.source], targets, dataset.partners,
                              f"{sensors[dataset.source]} of {where}", sensors[dataset.target], "by patch")

    def list_domains(self, domains):
        """{domain: sorted patch paths} of the scenes of --phase's split."""
        if not getattr(self, "patches", None):
            self.patches = self.scan()
        scenes = phase_scenes(self.opt, {scene for scene, _ in self.patches}, self.root)
        chosen = {key: files for key, files in self.patches.items() if key[0] in scenes}
        paths = {}
        for domain in domains:
            sensor = SENSOR_OF_DOMAIN[domain]
            found = sorted(files[sensor] for files in chosen.values() if sensor in files)
            if not found:
                raise SargenError(f"no {SENSOR_NAMES[sensor]} ({sensor}) patches in the {len(scenes)} "
                                  f"'{self.opt.phase}' scene(s) under {self.root} (expected {self.layout()})")
            paths[domain] = found[:self.opt.max_dataset_size]
        self.log_settings(paths)
        return paths

    def scan(self):
        """{(scene, patch): {sensor: path}} of the patch files under --dataroot; a one-line error when none match."""
        if not self.root.is_dir():
            raise SargenError(f"--dataroot not found: {self.root} (expected {self.layout()} in it)")
        patches, others = {}, []
        for folder, subfolders, files in os.walk(self.root):
            subfolders.sort()
            for name in sorted(files):
                match = PATCH_NAME.match(name)
                in_place = match and Path(folder).name == f"{match['sensor']}_{match['scene']}"
                if in_place and match["suffix"].lower() in self.suffixes:
                    patches.setdefault((scene_of(match), int(match["patch"])), {})[match["sensor"]] = \
                        Path(folder) / name
                elif is_image_file(name):
                    others.append(Path(folder, name).relative_to(self.root))
        if not patches:
            raise SargenError(self.layout_error(others))
        return patches

    def layout_error(self, others):
        """The message of a tree without a patch of this layout: the expected pattern and what was found."""
        found = (f"found {len(others)} other image file(s), e.g. {', '.join(map(str, others[:2]))}"
                 if others else "found no image files")
        mode, suffixes = self.other_mode
        if any(PATCH_NAME.match(path.name) and path.suffix.lower() in suffixes for path in others):
            found += f" (a --dataset_mode {mode} tree?)"
        return f"--dataset_mode {self.mode} expects {self.root}/{self.layout()}: {found}"

    def pairing_rule(self):
        """How partners are found, for messages."""
        return "the other sensor's patch of the same scene and patch number"

    def find_partners(self):
        """{source patch: the other sensor's patch of the same scene and patch number}."""
        source, target = SENSOR_OF_DOMAIN[self.source], SENSOR_OF_DOMAIN[self.target]
        return {files[source]: files[target] for files in self.patches.values() if source in files and target in files}

    def log_settings(self, paths):
        """Log the patch counts and how each domain is read (the layout's defaults unless options change them)."""
        for domain, domain_paths in paths.items():
            sensor = SENSOR_OF_DOMAIN[domain]
            logger.info("%s domain %s = %s (%s): %d patches; %s", self.mode, domain, SENSOR_NAMES[sensor], sensor,
                        len(domain_paths), self.radiometry(domain).describe())
