"""FID/KID features with pytorch-fid's network and weights (the TensorFlow FID Inception, pt_inception-2015-12-05).

The network is pytorch_fid.inception.InceptionV3, built by the package itself; only the weights file is loaded
here, with weights_only=True, from ``--inception_weights PATH`` or from where pytorch-fid looks for it (the torch
hub cache, ``$TORCH_HOME/hub/checkpoints/pt_inception-2015-12-05-6726825d.pth``). Images go in as pytorch-fid
reads files: 8-bit levels (v rounded to n / 255; no-data pixels filled with the mean of the valid ones), three
channels (grey repeated), bilinearly resized to 299 x 299 (align_corners=False, no antialiasing: the resize
inside pytorch-fid's network) and scaled to [-1, 1]; features of blocks before the last are average-pooled
(--fid_dims 64, 192, 768).
"""

import logging
import urllib.error
from pathlib import Path
from unittest import mock

import numpy as np
import pytorch_fid.inception
import torch
from pytorch_fid.inception import FID_WEIGHTS_URL, InceptionV3
from torch.nn import functional

from evaluation.features import filled
from models.vgg import file_digest
from util.checkpoint import load_checkpoint
from util.errors import SargenError

logger = logging.getLogger("sargen")

FID_DIMS = tuple(InceptionV3.BLOCK_INDEX_BY_DIM)
INCEPTION_SIZE = 299
RESIZE_RULE = ("8-bit levels, grey repeated to RGB, bilinear resize to 299 x 299 without antialiasing "
               "(pytorch-fid's)")


def fid_weights_path():
    """Where pytorch-fid looks for its weights: the torch hub cache (TORCH_HOME aware)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(FID_WEIGHTS_URL).name


def find_fid_weights(path=None, download=False):
    """(weights file, None) of --inception_weights or the hub cache, or (None, why not and where to put it).

    With `download`, a missing cache file is fetched from pytorch-fid's release first (SargenError offline).
    """
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise SargenError(f"--inception_weights file not found: {path}")
        return path, None
    cache_path = fid_weights_path()
    if cache_path.is_file():
        return cache_path, None
    if download:
        try:
            cache_path.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(FID_WEIGHTS_URL, str(cache_path))
            return cache_path, None
        except (OSError, urllib.error.URLError) as error:
            raise SargenError(f"pytorch-fid's Inception weights are not in {cache_path} and could not be "
                              f"downloaded ({type(error).__name__}): download {FID_WEIGHTS_URL} to that path, or "
                              f"pass --inception_weights PATH") from None
    return None, (f"unavailable: pytorch-fid's Inception weights are not in {cache_path}: download "
                  f"{FID_WEIGHTS_URL} there (or set TORCH_HOME), or pass --inception_weights PATH")


def build_fid_inception(weights_path, dims):
    """pytorch-fid's InceptionV3 returning the block of `dims` features, with the weights of `weights_path`."""
    state = load_checkpoint(weights_path, "pytorch-fid Inception weights")
    # The package builds its network and loads FID_WEIGHTS_URL through this function: give it the file's state.
    with mock.patch.object(pytorch_fid.inception, "load_state_dict_from_url", lambda *args, **kwargs: state):
        try:
            return InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[dims]])
        except (RuntimeError, TypeError, AttributeError, KeyError) as error:
            reason = " ".join(str(error).split())[:300]
            raise SargenError(f"{weights_path}: not pytorch-fid's Inception weights ({reason})") from None


def fid_input(image, valid=None):
    """A C x H x W image in [0, 1] (1 or 3 channels) as pytorch-fid's network input: 3 x 299 x 299 in [0, 1]."""
    image = filled(image.float(), valid)
    image = torch.round(image.clamp(0.0, 1.0) * 255.0) / 255.0
    image = image.expand(3, -1, -1)
    return functional.interpolate(image[None], size=(INCEPTION_SIZE, INCEPTION_SIZE), mode="bilinear",
                                  align_corners=False)[0]


class FIDFeatures:
    """Inception features of images given one at a time, computed in batches of `batch_size`."""

    def __init__(self, weights_path, dims, device, batch_size=50):
        """Build pytorch-fid's network on `device` (eval mode, no gradients)."""
        self.network = build_fid_inception(weights_path, dims).to(device).eval().requires_grad_(False)
        self.dims, self.device, self.batch_size = dims, device, batch_size
        self.weights = f"{Path(weights_path).name} (sha256 {file_digest(weights_path)})"

    def description(self):
        """The network, weights and input rule, for metrics.json."""
        return {"network": "pytorch-fid InceptionV3 (FID Inception, pt_inception-2015-12-05)", "dims": self.dims,
                "weights": self.weights, "resize": RESIZE_RULE}

    @torch.no_grad()
    def __call__(self, inputs):
        """N x dims features (float64) of a list of fid_input() tensors."""
        features = []
        for start in range(0, len(inputs), self.batch_size):
            batch = torch.stack(inputs[start:start + self.batch_size]).to(self.device)
            output = self.network(batch)[0]
            if output.shape[2:] != (1, 1):
                output = functional.adaptive_avg_pool2d(output, output_size=(1, 1))
            features.append(output[:, :, 0, 0].double().cpu().numpy())
        return np.concatenate(features) if features else np.zeros((0, self.dims))


class FeatureSet:
    """The features of one image set, fed one image at a time and computed a batch at a time."""

    def __init__(self, extractor):
        """Start empty."""
        self.extractor, self.pending, self.done = extractor, [], []

    def add(self, image, valid=None):
        """Queue one C x H x W [0, 1] image; run the network when a batch is full."""
        self.pending.append(fid_input(image, valid).cpu())
        if len(self.pending) >= self.extractor.batch_size:
            self.flush()

    def flush(self):
        """Compute the queued images' features."""
        if self.pending:
            self.done.append(self.extractor(self.pending))
            self.pending = []

    def features(self):
        """N x dims features of every image added."""
        self.flush()
        return np.concatenate(self.done) if self.done else np.zeros((0, self.extractor.dims))
