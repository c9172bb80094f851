"""Deep features for the texture metrics: VGG Gram matrices (models.vgg's --vgg / --vgg_weights policy, models.losses'
Gram), and the images networks see: grey and RGB images as they are, any other band count band by band, no-data
pixels filled with the mean of the valid ones."""

import torch
from torch.nn import functional

from models.losses import gram_matrix, style_loss
from models.vgg import VGGFeatures, parse_layers


def filled(image, valid=None):
    """A C x H x W image with the pixels outside `valid` set to the mean of the valid ones (per channel), so that
    what no-data pixels hold never reaches a network's output; the image itself without a mask."""
    if valid is None:
        return image
    mask = torch.as_tensor(valid, device=image.device)
    if not mask.any():
        return torch.zeros_like(image)
    means = image[:, mask].mean(dim=1)
    return torch.where(mask, image, means[:, None, None].to(image.dtype))


def network_views(image, band_labels):
    """[(suffix, 1- or 3-channel C x H x W image)]: ('', image) for 1 or 3 channels, else ('_LABEL', band) per band."""
    if image.shape[0] in (1, 3):
        return [("", image)]
    return [(f"_{label}", image[index:index + 1]) for index, label in enumerate(band_labels)]


class GramFeatures:
    """Gram matrices of [0, 1] images at VGG style layers, and the style distance between two sets of them."""

    def __init__(self, backbone, weights, style_layer, seed, device):
        """Build the frozen VGG for the style layers (a comma-separated --style_layer value)."""
        self.layers = parse_layers(backbone, style_layer, "--style_layer")
        self.network = VGGFeatures(backbone, weights, self.layers, seed).to(device)
        self.device = device
        self.backbone = backbone

    @torch.no_grad()
    def grams(self, image, valid=None):
        """{layer: 1 x C x C Gram matrix} of one C x H x W image, on the CPU in float32.

        With a validity mask, over the feature positions whose pixels (mask resized to the layer) are valid.
        """
        features = self.network(filled(image.float(), valid)[None].to(self.device))
        if valid is None:
            return {layer: gram_matrix(features[layer]).cpu() for layer in self.layers}
        mask = torch.as_tensor(valid, dtype=torch.float32, device=self.device)[None, None]
        grams = {}
        for layer in self.layers:
            layer_mask = functional.interpolate(mask, size=features[layer].shape[2:], mode="nearest")
            share = layer_mask.mean().clamp_min(1e-12)  # Gram over the valid positions: F F^T / (C * valid count)
            grams[layer] = (gram_matrix(features[layer] * layer_mask) / share).cpu()
        return grams

    @staticmethod
    def distance(grams, target_grams):
        """The style loss: sum over layers of the mean squared Gram difference."""
        return float(style_loss(grams, target_grams)[0])

    def description(self):
        """The backbone, weights and layers, for metrics.json."""
        return {"vgg": self.backbone, "weights": self.network.weights_description, "style_layers": self.layers}
