"""Gram matrices, the style and content losses and total variation, per image so a batch equals images one at a time."""

import torch


def at_least_float32(tensor):
    """The tensor in float32 if it has a lower precision (bfloat16/float16 from autocast), else as it is."""
    return tensor.float() if tensor.dtype in (torch.bfloat16, torch.float16) else tensor


def gram_matrix(features):
    """G = F F^T / (C H W) for each image of a BxCxHxW batch, in at least float32: BxCxC."""
    batch, channels, height, width = features.shape
    flat = at_least_float32(features.reshape(batch, channels, height * width))
    return torch.bmm(flat, flat.transpose(1, 2)) / (channels * height * width)


def style_loss(generated_grams, target_grams):
    """Sum over layers of the mean squared Gram difference, one value per image."""
    return sum(((generated_grams[name] - target_grams[name]) ** 2).mean(dim=(1, 2)) for name in target_grams)


def content_loss(generated_features, target_features):
    """Sum over layers of the mean squared feature difference, one value per image."""
    return sum(((at_least_float32(generated_features[name]) - target_features[name]) ** 2).mean(dim=(1, 2, 3))
               for name in target_features)


def total_variation(images):
    """Each image's mean absolute difference between neighbouring pixels (both directions)."""
    vertical = (images[:, :, 1:, :] - images[:, :, :-1, :]).abs().mean(dim=(1, 2, 3))
    horizontal = (images[:, :, :, 1:] - images[:, :, :, :-1]).abs().mean(dim=(1, 2, 3))
    return vertical + horizontal
