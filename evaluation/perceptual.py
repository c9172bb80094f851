"""LPIPS with the lpips package (Zhang et al. 2018, v0.1): its network and its linear-layer weights.

The package ships the linear layers; the backbone (``--lpips_net alex`` or ``vgg``) takes torchvision's
ImageNet file, from ``--lpips_weights PATH`` or from torchvision's cache where the package would look
(``$TORCH_HOME/hub/checkpoints/alexnet-owt-7be5be79.pth``, ``vgg16-397923af.pth``), loaded here with
weights_only=True. Images go in as the package's ``normalize=True`` expects ([0, 1], 3 channels, grey
repeated). With a validity mask the masked pixels of both images are filled with the mean of the valid ones and
the score is the mean of the package's spatial map over the valid pixels.
"""

import re
import warnings
from pathlib import Path

import lpips
import torch
import torchvision

from evaluation.features import filled
from models.vgg import file_digest
from util.checkpoint import load_checkpoint
from util.errors import SargenError

LPIPS_NETS = {"alex": "alexnet", "vgg": "vgg16"}
MIN_SIZE = 32  # smaller images vanish in the backbones' pooling
SLICE_KEY = re.compile(r"^slice\d+\.(\d+)\.(weight|bias)$")


def lpips_backbone_path(net):
    """Where torchvision's cache keeps the ImageNet file of the --lpips_net backbone (TORCH_HOME aware)."""
    weights = torchvision.models.get_model_weights(LPIPS_NETS[net]).IMAGENET1K_V1
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name


def find_lpips_weights(net, path=None):
    """(backbone file, None) of --lpips_weights or the cache, or (None, why not and where to put the file)."""
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise SargenError(f"--lpips_weights file not found: {path}")
        return path, None
    cache_path = lpips_backbone_path(net)
    if cache_path.is_file():
        return cache_path, None
    url = torchvision.models.get_model_weights(LPIPS_NETS[net]).IMAGENET1K_V1.url
    return None, (f"unavailable: the {LPIPS_NETS[net]} ImageNet weights of LPIPS are not in {cache_path}: "
                  f"download {url} there (or set TORCH_HOME), or pass --lpips_weights PATH")


class LPIPSDistance:
    """LPIPS between two [0, 1] images of the same size, with the lpips package's network."""

    def __init__(self, net, backbone_path, device):
        """Build lpips.LPIPS(net) with its linear layers and the torchvision backbone file `backbone_path`."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torchvision's note on the package's `pretrained` argument
            model = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)
        state = load_checkpoint(backbone_path, "LPIPS backbone weights")
        try:
            model.net.load_state_dict({key: state[backbone_key(key)] for key in model.net.state_dict()})
        except (KeyError, RuntimeError, TypeError) as error:
            reason = " ".join(str(error).split())[:200]
            raise SargenError(f"{backbone_path}: not torchvision's {LPIPS_NETS[net]} weights ({reason})") from None
        self.model = model.to(device).eval().requires_grad_(False)
        self.device = device
        self.net = net
        self.weights = f"{Path(backbone_path).name} (sha256 {file_digest(backbone_path)})"

    def description(self):
        """The network and weights, for metrics.json."""
        return {"package": f"lpips {getattr(lpips, '__version__', '')}".strip(), "net": self.net, "version": "0.1",
                "backbone_weights": self.weights}

    @torch.no_grad()
    def __call__(self, fake, real, valid=None):
        """LPIPS of two C x H x W images in [0, 1] (C 1 or 3); nan if smaller than MIN_SIZE px a side."""
        if min(fake.shape[1:]) < MIN_SIZE:
            return float("nan")
        fake, real = (filled(image.float(), valid).expand(3, -1, -1)[None].to(self.device) for image in (fake, real))
        if valid is None:
            return float(self.model(fake, real, normalize=True).reshape(()))
        self.model.spatial = True
        try:
            distance_map = self.model(fake, real, normalize=True)[0, 0]
        finally:
            self.model.spatial = False
        chosen = torch.as_tensor(valid, device=distance_map.device)
        return float(distance_map[chosen].mean()) if chosen.any() else float("nan")


def backbone_key(lpips_key):
    """The torchvision key ('features.N.weight') of an lpips backbone key ('sliceK.N.weight')."""
    match = SLICE_KEY.match(lpips_key)
    if match is None:
        raise KeyError(lpips_key)
    return f"features.{match.group(1)}.{match.group(2)}"
