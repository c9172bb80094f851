"""test.py's GeoTIFF results (--results_format): each translation in the target domain's physical unit.

A model's output in the target domain is mapped back through the inverse of the domain's recorded reading rule
(data.radiometry.output_rule: the training's dB window, in its unit, dB or linear power; 8-bit levels for a domain
read without a fixed window), resized to the source image's own size and given its georeferencing and no-data
mask, as app.py
writes its .tif outputs, so it overlays the source and compares with the real target file band by band in
physical units. util.results.ResultsWriter writes the files and RESULTS/raster_outputs.json, which records how
the .tif files and the real target files are read (evaluate.py --results uses it).
"""

from pathlib import Path

from data.image_io import read_image_with_info
from data.radiometry import option_text, output_rule, radiometry_for, translation_domains
from models.file_translation import resize_image, write_raster_output
from util.results import RASTER_RECORD_FORMAT

RESULTS_FORMATS = ("auto", "png", "tif")


def add_results_format_option(parser):
    """Add --results_format (test.py of models whose results can be written as GeoTIFF)."""
    parser.add_argument("--results_format", default="auto", choices=RESULTS_FORMATS,
                        help="png: page images only; tif: also images/NAME_fake_X2Y.tif, the output in the target "
                             "domain's physical unit (the recorded dB window and unit; 8-bit levels for domains "
                             "read without a fixed window) at the source's size with its georeferencing; auto: "
                             "tif where the checkpoint records the target domain's dB window, else png")
    return parser


def target_has_db_record(opt):
    """True when the checkpoint's radiometry record reads the target domain with the db rule (a fixed window)."""
    recorded = (getattr(opt, "radiometry_record", None) or {}).get(translation_domains(opt)[1])
    return recorded is not None and recorded.mode == "db"


class RasterOutputs:
    """Writes a result's raw outputs as GeoTIFFs through the inverse of the target domain's reading rule."""

    def __init__(self, opt):
        """The rule and unit (data.radiometry.output_rule, or 8-bit levels) and how sources and targets are read."""
        self.source_domain, self.domain = translation_domains(opt)
        self.rule, self.unit = output_rule(opt) if target_has_db_record(opt) else (None, "uint8")
        self.source_radiometry = radiometry_for(opt, self.source_domain)
        self.real_radiometry = radiometry_for(opt, self.domain)

    @classmethod
    def from_options(cls, opt):
        """The RasterOutputs of --results_format, or None when only PNGs are written (png; auto without a dB record)."""
        if opt.results_format == "png" or (opt.results_format == "auto" and not target_has_db_record(opt)):
            return None
        return cls(opt)

    def description(self):
        """The files' values in words, for the page and the log."""
        if self.unit == "uint8":
            return (f"8-bit levels (domain {self.domain} was read without a fixed window: "
                    f"{self.real_radiometry.describe()})")
        unit = "dB" if self.unit == "db" else "linear power"
        return (f"float32 {unit}, the model range -1..1 mapped to {option_text(self.rule.db_window)} dB (domain "
                f"{self.domain}'s recorded window)")

    def write(self, result, image_dir):
        """Write images/NAME_LABEL.tif of each raw output at its source's size with the source's georeferencing;
        return their (path relative to the page, label) pairs."""
        source = result.sources.get(f"real_{self.source_domain}")
        info = read_image_with_info(source, None, self.source_radiometry)[1] if source else None
        files = []
        for label, output in result.outputs.items():
            output = output.detach().float().cpu()
            if info is not None:
                output = resize_image(output, info.size)
            file_name = f"{result.name}_{label}.tif"
            write_raster_output(output, Path(image_dir) / file_name, info, self.unit,
                                None if self.rule is None else self.rule.db_window)
            files.append((f"images/{file_name}", label))
        return files

    def record(self, labels):
        """RESULTS/raster_outputs.json: which files, their unit and window, how the real target files were read."""
        return {"format": RASTER_RECORD_FORMAT, "labels": sorted(labels), "domain": self.domain,
                "unit": self.unit, "db_window": None if self.rule is None else list(self.rule.db_window),
                "real_radiometry": self.real_radiometry.record(), "description": self.description()}
