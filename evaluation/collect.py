"""Finding the generated and real target images of a results folder (RESULTS/images/NAME_LABEL.png)."""

from dataclasses import dataclass, field
from pathlib import Path

from data.image_io import is_image_file
from util.errors import SargenError

# Generated-image labels tried in order when --fake_label is not given (Gatys; U-GAT-IT AtoB, BtoA), each with
# the label of the real target image beside it in the folder (U-GAT-IT saves none: use --real_dir).
REAL_LABELS = {"fake_B": "real_B", "fake_A2B": "real_B", "fake_B2A": "real_A"}


@dataclass
class ImagePair:
    """A generated image and, when there is one, the real target image of the same name."""

    name: str
    fake: Path
    real: Path = None


@dataclass
class EvaluationImages:
    """What evaluate.py compares: generated images (paired where possible) and the real target domain."""

    results_dir: Path
    fake_label: str
    real_source: str
    pairs: list
    real_domain: list = field(default_factory=list)


def image_files(folder):
    """Sorted image files directly in `folder`."""
    return sorted(path for path in Path(folder).iterdir() if path.is_file() and is_image_file(path))


def labelled_images(files, label):
    """{NAME: path} of the files named NAME_LABEL.ext."""
    suffix = f"_{label}"
    return {path.stem[:-len(suffix)]: path for path in files if path.stem.endswith(suffix) and path.stem != suffix}


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
    """(label, {NAME: path}) of the generated images: `fake_label`, or the first of REAL_LABELS' keys present."""
    candidates = [fake_label] if fake_label else list(REAL_LABELS)
    for label in candidates:
        found = labelled_images(files, label)
        if found:
            return label, found
    examples = ", ".join(path.name for path in files[:3])
    raise SargenError(f"no generated images NAME_{'.png, NAME_'.join(candidates)}.png in {results_dir / 'images'} "
                      f"(found e.g. {examples}): pass --fake_label LABEL")


def real_dir_images(real_dir):
    """The image files of --real_dir, or a one-line error."""
    real_dir = Path(real_dir)
    if not real_dir.is_dir():
        raise SargenError(f"--real_dir folder not found: {real_dir}")
    files = image_files(real_dir)
    if not files:
        raise SargenError(f"no images in --real_dir {real_dir}: give the folder of real target images")
    return files


def collect_images(results_dir, fake_label=None, real_label=None, real_dir=None):
    """The generated images of `results_dir`, paired by name with real ones from `real_dir` or the folder.

    Real target images come from `real_dir` (any names; paired when the file name without extension equals
    NAME) or else from the results folder's NAME_REAL_LABEL images (default: the target of the fake label).
    """
    results_dir = Path(results_dir)
    files = results_images(results_dir)
    fake_label, fakes = find_fake_images(files, results_dir, fake_label)
    if real_dir is not None:
        real_files = real_dir_images(real_dir)
        reals = {path.stem: path for path in reversed(real_files)}  # the first file of a name wins
        real_source = f"--real_dir {real_dir}"
    else:
        label = real_label or REAL_LABELS.get(fake_label)
        reals = labelled_images(files, label) if label else {}
        if real_label and not reals:
            raise SargenError(f"no real images NAME_{real_label}.png in {results_dir / 'images'}: "
                              f"check --real_label or pass --real_dir")
        real_files = sorted(reals.values())
        real_source = f"{label} images in the results folder" if reals else "none"
    pairs = [ImagePair(name, path, reals.get(name)) for name, path in sorted(fakes.items())]
    return EvaluationImages(results_dir, fake_label, real_source, pairs, real_files)
