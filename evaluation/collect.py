"""Which images evaluate.py compares: two folders (--fake_dir, --real_dir) or test.py's results layout (--results).

Generated images are paired with real ones by name: a generated file's stem, after stripping --fake_prefix where
it starts with it (app.py writes gen_sar_NAME), equals the real file's stem. In a results folder the generated
images are RESULTS/images/NAME_LABEL.png and their name is NAME; where test.py wrote GeoTIFF results
(RESULTS/raster_outputs.json, --results_format), the generated images are the NAME_LABEL.tif files and the real
ones the target files test.py read beside each source (recorded in images/NAME.row.json).
"""

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from data.image_io import is_image_file, is_tiff
from data.pairing import CO_REGISTERED, PAIRING_FILE, UNPAIRED, read_pairing
from util.errors import SargenError
from util.fileio import read_json_record
from util.results import RASTER_RECORD, RASTER_RECORD_FORMAT

logger = logging.getLogger("sargen")

# Generated-image labels tried in order when --fake_label is not given (Gatys and pix2pix AtoB; U-GAT-IT AtoB, BtoA;
# pix2pix BtoA), each with the label of the real target image beside it in the folder (U-GAT-IT saves none: use
# --real_dir).
REAL_LABELS = {"fake_B": "real_B", "fake_A2B": "real_B", "fake_B2A": "real_A", "fake_A": "real_A"}
HEATMAP_SUFFIX = "_heatmap"  # app.py --heatmap writes gen_sar_NAME_heatmap.png beside gen_sar_NAME.png


@dataclass
class NamedImage:
    """An image file and the name it pairs by."""

    name: str
    path: Path


@dataclass
class EvaluationImages:
    """What evaluate.py compares: generated and real images, the pairs by name, and where the report goes."""

    fakes: list
    reals: list
    out_dir: Path
    fake_source: str
    real_source: str
    pairing: str  # how names were matched, in words
    pairs: dict = field(default_factory=dict)  # generated name -> real NamedImage
    notes: list = field(default_factory=list)
    results_layout: bool = False
    unpaired_reason: str = None  # why no pairs are made: --unpaired, or the dataset's pairing.json
    fake_label: str = None  # the generated images' label in a results folder
    raster_record: dict = None  # RESULTS/raster_outputs.json when the generated images are test.py's GeoTIFFs
    raster_record_path: Path = None

    def pair_names(self, unpaired_reason=None):
        """Pair every generated image with the real image of its name (none when `unpaired_reason` says why not)."""
        reals = {image.name: image for image in self.reals}
        self.unpaired_reason = unpaired_reason
        self.pairs = {} if unpaired_reason else {image.name: reals[image.name] for image in self.fakes
                                                 if image.name in reals}
        return self


def recorded_pairing(folder):
    """(CO_REGISTERED or UNPAIRED, the pairing.json saying so) for a dataset folder, or (None, None) unrecorded.

    The record (data/pairing.py) is looked for in the folder's parent and up to two levels above it.
    """
    folder = Path(folder).resolve()
    for root in list(folder.parents)[:3]:
        record = read_pairing(root)
        if record is None:
            continue
        name = folder.relative_to(root).as_posix()
        for kind in (CO_REGISTERED, UNPAIRED):
            if any(name in group for group in record.get(kind, [])):
                return kind, root / PAIRING_FILE
        return None, None
    return None, None


def image_files(folder):
    """Sorted image files directly in `folder`."""
    return sorted(path for path in Path(folder).iterdir() if path.is_file() and is_image_file(path))


def folder_images(folder, option):
    """The image files of a folder named by `option`, or a one-line error saying what is missing."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SargenError(f"{option} folder not found: {folder}")
    files = image_files(folder)
    if not files:
        raise SargenError(f"no images (.png, .jpg, .tif) in {option} {folder}: give the folder that holds them")
    return files


def unique_names(images, where):
    """`images` with one file per name (the first, by file name); the others are noted and left out."""
    kept, notes = {}, []
    for image in images:
        if image.name in kept:
            notes.append(f"{image.path.name} in {where} has the name '{image.name}' of {kept[image.name].path.name}: "
                         f"left out")
        else:
            kept[image.name] = image
    return list(kept.values()), notes


def strip_prefix(stem, prefix):
    """`stem` without `prefix` where it starts with it (and keeps a name)."""
    return stem[len(prefix):] if prefix and stem.startswith(prefix) and len(stem) > len(prefix) else stem


def generated_folder_images(fake_dir, prefix):
    """(NamedImages of --fake_dir, notes): names with --fake_prefix stripped, app.py's heatmaps left out."""
    files = folder_images(fake_dir, "--fake_dir")
    stems = {path.stem for path in files}
    heatmaps = [path for path in files if path.stem.endswith(HEATMAP_SUFFIX)
                and path.stem[:-len(HEATMAP_SUFFIX)] in stems]
    notes = [f"{len(heatmaps)} heatmap(s) NAME{HEATMAP_SUFFIX} beside generated images left out"] if heatmaps else []
    images = [NamedImage(strip_prefix(path.stem, prefix), path) for path in files if path not in heatmaps]
    images, duplicates = unique_names(images, "--fake_dir")
    return images, notes + duplicates


def real_folder_images(real_dir):
    """(NamedImages of --real_dir, named by stem, notes)."""
    return unique_names([NamedImage(path.stem, path) for path in folder_images(real_dir, "--real_dir")], "--real_dir")


def collect_folders(fake_dir, real_dir, prefix="gen_sar_", out_dir=None):
    """The images of --fake_dir and --real_dir; the report goes to `out_dir` (default: the fake folder)."""
    fakes, fake_notes = generated_folder_images(fake_dir, prefix)
    reals, real_notes = real_folder_images(real_dir)
    pairing = f"file name without extension, after stripping '{prefix}'" if prefix else "file name without extension"
    return EvaluationImages(fakes, reals, Path(out_dir or fake_dir), f"--fake_dir {fake_dir}",
                            f"--real_dir {real_dir}", pairing, notes=fake_notes + real_notes)


def labelled_images(files, label):
    """NamedImages NAME of the files named NAME_LABEL.ext."""
    suffix = f"_{label}"
    return [NamedImage(path.stem[:-len(suffix)], path) for path in files
            if path.stem.endswith(suffix) and path.stem != suffix]


def results_images(results_dir):
    """The image files of RESULTS/images, or a one-line error saying what is missing."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise SargenError(f"results folder not found: {results_dir} (pass the folder test.py wrote, "
                          f"e.g. results/NAME/test_latest)")
    images_dir = results_dir / "images"
    files = image_files(images_dir) if images_dir.is_dir() else []
    if not files:
        raise SargenError(f"no images in {images_dir}: run test.py first, or pass the folder that holds "
                          f"images/NAME_LABEL.png")
    return files


def find_fake_images(files, results_dir, fake_label=None):
    """(label, NamedImages) of the generated images: `fake_label`, or the first of REAL_LABELS' keys present."""
    candidates = [fake_label] if fake_label else list(REAL_LABELS)
    for label in candidates:
        found = labelled_images(files, label)
        if found:
            return label, found
    examples = ", ".join(path.name for path in files[:3])
    raise SargenError(f"no generated images NAME_{'.png, NAME_'.join(candidates)}.png in {results_dir / 'images'} "
                      f"(found e.g. {examples}): pass --fake_label LABEL")


def read_raster_record(results_dir):
    """The raster_outputs.json test.py wrote beside GeoTIFF results (util.results.RasterOutputs), or None."""
    return read_json_record(Path(results_dir) / RASTER_RECORD, RASTER_RECORD_FORMAT, "test.py's record of GeoTIFF "
                            "results", "delete it to score the PNG results")


def recorded_real_images(results_dir, fakes, label):
    """(NamedImages of the real files `label` that test.py read beside each generated image, notes), from the
    rows images/NAME.row.json; files no longer on disk are left out with a note."""
    reals, missing = [], []
    for fake in fakes:
        try:
            row = json.loads((Path(results_dir) / "images" / f"{fake.name}.row.json").read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        path = (row.get("sources") or {}).get(label)
        if path and Path(path).is_file():
            reals.append(NamedImage(fake.name, Path(path)))
        elif path:
            missing.append(path)
    notes = [f"{len(missing)} recorded real file(s) not found, e.g. {missing[0]}: left out (pass --real_dir)"] \
        if missing else []
    return reals, notes


def collect_results(results_dir, fake_label=None, real_label=None, real_dir=None, out_dir=None):
    """The generated images of a results folder, with real ones from `real_dir` or the folder's NAME_REAL_LABEL.

    GeoTIFF results (raster_outputs.json) are scored instead of the PNG renderings of the same images, against the
    real target files test.py read (its rows record them) unless `real_dir` is given.
    """
    results_dir = Path(results_dir)
    files = results_images(results_dir)
    record = read_raster_record(results_dir)
    rasters = [path for path in files if is_tiff(path)]
    if record is not None and rasters and (fake_label is None or fake_label in record["labels"]):
        fake_label, fakes = find_fake_images(rasters, results_dir, fake_label or record["labels"][0])
        notes = [f"GeoTIFF results ({results_dir / RASTER_RECORD}): {record['description']}; their PNG renderings "
                 f"are left out"]
    else:
        record = None
        fake_label, fakes = find_fake_images([path for path in files if not is_tiff(path)], results_dir, fake_label)
        notes = []
    label = real_label or REAL_LABELS.get(fake_label)
    pairing = "NAME of NAME_LABEL.png and the real file name without extension"
    if real_dir is not None:
        reals, real_notes = real_folder_images(real_dir)
        real_source = f"--real_dir {real_dir}"
    elif record is not None:
        reals, real_notes = recorded_real_images(results_dir, fakes, label)
        real_source = (f"the {label} files test.py read beside the sources (images/NAME.row.json)" if reals
                       else "none (the test data had no co-registered target files: pass --real_dir)")
        pairing = f"NAME of NAME_LABEL.tif and the co-registered {label} file test.py read beside its source"
    else:
        reals, real_notes = (labelled_images(files, label) if label else []), []
        if real_label and not reals:
            raise SargenError(f"no real images NAME_{real_label}.png in {results_dir / 'images'}: "
                              f"check --real_label or pass --real_dir")
        real_source = f"{label} images in the results folder" if reals else "none"
    return EvaluationImages(fakes, reals, Path(out_dir or results_dir), f"{fake_label} images in {results_dir}",
                            real_source, pairing, notes=notes + real_notes, results_layout=True, fake_label=fake_label,
                            raster_record=record, raster_record_path=results_dir / RASTER_RECORD if record else None)
