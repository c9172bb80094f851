"""Deep features for the texture and distribution metrics: VGG Gram matrices and Inception-v3 pool features.

Gram matrices reuse models.vgg (the --vgg / --vgg_weights policy) and models.losses. Inception-v3 weights
(``--inception_weights``): ``imagenet`` is torchvision's IMAGENET1K_V1 file in its cache (TORCH_HOME, by
default ~/.cache/torch/hub/checkpoints/inception_v3_google-0cc3c7bd.pth), ``PATH`` a local file holding a
torchvision inception_v3 state dict. Files are loaded with weights_only=True.
"""

import numpy as np
import torch
import torchvision
from torch import nn

from models.losses import gram_matrix, style_loss
from models.vgg import VGGFeatures, file_digest, imagenet_cache_path, parse_layers
from util.checkpoint import load_checkpoint
from util.errors import SargenError

INCEPTION_SIZE = 299
INCEPTION_FEATURES = 2048


class GramFeatures:
    """Gram matrices of [0, 1] images at VGG style layers, and the style distance between two sets of them."""

    def __init__(self, backbone, weights, style_layer, seed, device):
        """Build the frozen VGG for the style layers (a comma-separated --style_layer value)."""
        self.layers = parse_layers(backbone, style_layer, "--style_layer")
        self.network = VGGFeatures(backbone, weights, self.layers, seed).to(device)
        self.device = device
        self.backbone = backbone

    @torch.no_grad()
    def grams(self, image):
        """{layer: 1 x C x C Gram matrix} of one C x H x W image, on the CPU in float32."""
        features = self.network(image[None].to(self.device))
        return {layer: gram_matrix(features[layer]).cpu() for layer in self.layers}

    @staticmethod
    def distance(grams, target_grams):
        """The style loss: sum over layers of the mean squared Gram difference."""
        return float(style_loss(grams, target_grams)[0])

    def description(self):
        """The backbone, weights and layers, for metrics.json."""
        return {"vgg": self.backbone, "weights": self.network.weights_description, "style_layers": self.layers}


def inception_weights_state(weights, download):
    """(state dict, description) of --inception_weights; imagenet is downloaded only if `download`.

    Returns (None, reason) when imagenet is asked for, is not in the cache and `download` is False.
    """
    if weights != "imagenet":
        return load_checkpoint(weights, "Inception-v3 weights"), f"file:{file_digest(weights)}"
    cache_path = imagenet_cache_path("inception_v3")
    url = torchvision.models.get_model_weights("inception_v3").IMAGENET1K_V1.url
    if cache_path.is_file():
        return load_checkpoint(cache_path, "Inception-v3 weights"), f"imagenet:{cache_path.name}"
    if not download:
        return None, (f"ImageNet Inception-v3 weights are not in {cache_path}: download {url} there, "
                      f"pass --fid to download them, or --inception_weights PATH")
    try:
        state = torchvision.models.get_model_weights("inception_v3").IMAGENET1K_V1.get_state_dict(
            progress=True, weights_only=True)
    except Exception as error:  # offline: URLError, socket errors, HTTP errors
        raise SargenError(f"ImageNet Inception-v3 weights are not in {cache_path} and could not be downloaded "
                          f"({type(error).__name__}): download {url} to that path (or set TORCH_HOME), "
                          f"pass --inception_weights PATH, or --no_fid") from None
    return state, f"imagenet:{cache_path.name}"


class InceptionFeatures:
    """2048-d average-pool features of torchvision's Inception-v3 for [0, 1] images of any size and 1 or 3 channels."""

    def __init__(self, state, description, device, source="--inception_weights"):
        """Build Inception-v3 (eval mode, no classifier) with the weights of a torchvision state dict."""
        network = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False)
        try:
            network.load_state_dict(state)
        except (RuntimeError, TypeError, AttributeError) as error:
            reason = " ".join(str(error).split())[:300]
            raise SargenError(f"{source}: not a torchvision inception_v3 state dict ({reason})") from None
        network.fc = nn.Identity()
        network.AuxLogits = None
        self.network = network.eval().requires_grad_(False).to(device)
        self.device = device
        self.description = description

    @torch.no_grad()
    def __call__(self, image):
        """Pool features (2048 floats) of one C x H x W image: resized to 299 px, scaled to [-1, 1]."""
        images = image[None].to(self.device).expand(-1, 3, -1, -1)
        images = nn.functional.interpolate(images, size=(INCEPTION_SIZE, INCEPTION_SIZE), mode="bilinear",
                                           align_corners=False, antialias=True)
        return self.network(images * 2.0 - 1.0)[0].double().cpu().numpy()


def stack_features(feature_list):
    """An N x 2048 array of per-image features."""
    return np.stack(feature_list) if feature_list else np.zeros((0, INCEPTION_FEATURES))
