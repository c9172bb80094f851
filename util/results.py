"""Writing test results: images/NAME_LABEL.png, index.html with a row per image, and loss_log.txt; given a
raster writer (models.raster_results.RasterOutputs, U-GAT-IT's --results_format) also images/NAME_LABEL.tif in
physical units, listed in RESULTS/raster_outputs.json.

The page draws each image's loss curve (Gatys) and, given the checkpoint folder, the training run's losses and
metrics over steps as pictures (util.curves). Each image's row is also saved as images/NAME.row.json once its
images are written, so a rerun with --skip_existing knows which images are finished and still lists them.

Under torchrun every rank writes the images of its own share of the test set; the rows of the page (plain
values, no tensors) are gathered to rank 0, which writes index.html and loss_log.txt once, in dataset order.
"""

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

from data.image_io import write_image
from util import distributed
from util.curves import chart_row, point_curves
from util.fileio import write_text_atomic
from util.html import HTMLPage, format_value
from util.visualizer import add_training_curves
from util.visuals import display_image

logger = logging.getLogger("sargen")

RASTER_RECORD = "raster_outputs.json"
RASTER_RECORD_FORMAT = 1


@dataclass
class ImageResult:
    """What a model produced for one input image: the visuals of the page; for GeoTIFF results its raw outputs
    ({label: CxHxW tensor in [-1, 1] of the target domain}) and files ({'real_A': source path, 'real_B': the
    co-registered real target file, ...})."""

    name: str
    visuals: dict
    scalars: dict = field(default_factory=dict)
    curve: list = field(default_factory=list)
    outputs: dict = field(default_factory=dict)
    sources: dict = field(default_factory=dict)


@dataclass
class ResultRow:
    """One image's row of the page, plain values only (ranks send it to rank 0): its place in the dataset,
    name, saved files as (path relative to the page, label) pairs, final values and loss curve; GeoTIFF results
    as (path, label) pairs and the input files it came from ({label: absolute path})."""

    position: int
    name: str
    files: list
    scalars: dict
    curve: list
    rasters: list = field(default_factory=list)
    sources: dict = field(default_factory=dict)


def result_dir(opt):
    """RESULTS_DIR/NAME/PHASE_EPOCH, pix2pix's results layout."""
    return Path(opt.results_dir) / opt.name / f"{opt.phase}_{opt.epoch}"


class ResultsWriter:
    """Saves each ImageResult's visuals as PNG and lists them in one HTML page and one loss log."""

    def __init__(self, web_dir, title, image_width=256, notes=(), training_dir=None, rasters=None):
        """Prepare `web_dir`; nothing is written until images are added. `training_dir`: the checkpoint folder
        whose loss and metrics logs the page draws; `rasters`: the GeoTIFF writer (RasterOutputs) or None."""
        self.web_dir = Path(web_dir)
        self.training_dir = training_dir
        self.image_dir = self.web_dir / "images"
        self.title = title
        self.image_width = image_width
        self.rasters = rasters
        self.notes = list(notes)
        if rasters is not None:
            self.notes.append(f"GeoTIFF results images/NAME_LABEL.tif: {rasters.description()}, at each source "
                              f"image's size with its georeferencing")
            logger.info("GeoTIFF results: %s", rasters.description())
        self.rows = []

    def save_images(self, result):
        """Write one result's visuals as images/NAME_LABEL.png now; return their (path, label) pairs."""
        files = []
        for label, image in result.visuals.items():
            file_name = f"{result.name}_{label}.png"
            write_image(display_image(image), self.image_dir / file_name, value_range=(-1.0, 1.0))
            files.append((f"images/{file_name}", label))
        return files

    def add(self, result, position=None):
        """Save one result's images and row file now; keep its row for the page (`position`: its dataset place)."""
        position = len(self.rows) if position is None else position
        rasters = self.rasters.write(result, self.image_dir) if self.rasters is not None else []
        sources = {label: str(Path(path).resolve()) for label, path in result.sources.items() if path}
        row = ResultRow(position, result.name, self.save_images(result), dict(result.scalars), list(result.curve),
                        rasters, sources)
        write_text_atomic(self.row_path(row.name), json.dumps(asdict(row)))
        self.rows.append(row)

    def row_path(self, name):
        """Where the row of image `name` is saved beside its images."""
        return self.image_dir / f"{name}.row.json"

    def finished_row(self, name, position):
        """The row of image `name` if an earlier run finished it (row file and every image present), else None."""
        try:
            row = ResultRow(**json.loads(self.row_path(name).read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            return None
        if not all((self.web_dir / path).is_file() for path, _ in row.files + row.rasters):
            return None
        if self.rasters is not None and not row.rasters:
            return None  # finished as PNG only: its GeoTIFF is still to write
        row.position = position
        row.files, row.rasters = [tuple(pair) for pair in row.files], [tuple(pair) for pair in row.rasters]
        return row

    def skip_finished(self, positions, names):
        """The positions still to do; the rows of images an earlier run finished are kept for the page."""
        remaining = []
        for position in positions:
            row = self.finished_row(names[position], position)
            if row is None:
                remaining.append(position)
            else:
                self.rows.append(row)
        return remaining

    def all_rows(self):
        """Every rank's rows in dataset order on rank 0; None on the other ranks."""
        parts = distributed.gather_objects(self.rows)
        if parts is None:
            return None
        return sorted((row for part in parts for row in part), key=lambda row: row.position)

    def save(self):
        """Write index.html and loss_log.txt (atomically, by rank 0) for the results of every rank.

        Returns the page's path on rank 0 and None on the other ranks; every rank must call it.
        """
        rows = self.all_rows()
        if rows is None:
            return None
        page = HTMLPage(self.web_dir, self.title)
        for note in self.notes:
            page.add_text(note)
        if self.training_dir is not None:
            add_training_curves(page, self.training_dir)
        for row in rows:
            page.add_header(row.name)
            page.add_images(row.files, self.image_width)
            if row.rasters:
                page.add_links([(path, f"{label}.tif") for path, label in row.rasters])
            if row.scalars:
                page.add_table(list(row.scalars), [list(row.scalars.values())])
            if row.curve:
                page.add_element(chart_row(point_curves(row.curve)))
        page.save()
        write_text_atomic(self.web_dir / "loss_log.txt", self.loss_log(rows))
        if self.rasters is not None:
            labels = {label for row in rows for _, label in row.rasters}
            write_text_atomic(self.web_dir / RASTER_RECORD, json.dumps(self.rasters.record(labels), indent=1) + "\n")
        return page.index_path

    def loss_log(self, rows):
        """The rows' loss curves and final values as text, one line per logged step."""
        lines = [f"# {note}" for note in self.notes]
        for row in rows:
            for point in row.curve:
                values = " ".join(f"{key}: {format_value(value)}" for key, value in point.items())
                lines.append(f"(image: {row.name}) {values}")
            if row.scalars:
                values = " ".join(f"{key}: {format_value(value)}" for key, value in row.scalars.items())
                lines.append(f"(image: {row.name}) final {values}")
        return "\n".join(lines) + "\n"
