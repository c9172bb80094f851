"""Gram matrices and the style and content losses, per image so a batch equals images one at a time."""

import torch


def gram_matrix(features):
    """G = F F^T / (C H W) for each image of a BxCxHxW batch, in float32: BxCxC."""
    batch, channels, height, width = features.shape
    flat = features.reshape(batch, channels, height * width).float()
    return torch.bmm(flat, flat.transpose(1, 2)) / (channels * height * width)


def style_loss(generated_grams, target_grams):
    """Sum over layers of the mean squared Gram difference, one value per image."""
    return sum(((generated_grams[name] - target_grams[name]) ** 2).mean(dim=(1, 2)) for name in target_grams)


def content_loss(generated_features, target_features):
    """Sum over layers of the mean squared feature difference, one value per image."""
    return sum(((generated_features[name].float() - target_features[name]) ** 2).mean(dim=(1, 2, 3))
               for name in target_features)
