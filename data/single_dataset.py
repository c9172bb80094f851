"""Source images only: a file, a folder or a glob given as --dataroot."""

import glob
from pathlib import Path

from data.base_dataset import BaseDataset, category_of
from data.image_io import is_image_file, list_image_files
from data.radiometry import translation_domains
from util.errors import SargenError


def resolve_image_paths(spec, max_count=None, option="--dataroot"):
    """Image files named by a file path, a folder or a glob pattern (given as `option`)."""
    path = Path(spec)
    if path.is_dir():
        return list_image_files(path, max_count, option=option)
    if path.is_file():
        return [path]
    matches = sorted(Path(match) for match in glob.glob(str(spec)) if is_image_file(match))
    if not matches:
        raise SargenError(f"{option} {spec}: no image file, folder or glob match")
    return matches[:max_count] if max_count is not None else matches


class SingleDataset(BaseDataset):
    """Items of source images (key A) from a file, folder or glob."""

    def __init__(self, opt):
        """Resolve the image list without requiring a PHASE/A layout."""
        super().__init__(opt)
        self.paths = resolve_image_paths(opt.dataroot, opt.max_dataset_size)

    def __len__(self):
        """Number of items."""
        return len(self.paths)

    def __getitem__(self, index):
        """One source image and its path; None if the file is skipped (--skip_bad)."""
        path = self.paths[index]
        image = self.read(path, translation_domains(self.opt)[0])  # the source domain's reading rule
        if image is None:
            return None
        return {"A": self.preprocess(image), "A_paths": str(path), "category": category_of(path)}
