"""What sets a band apart in an image: each channel's mean, spread and share of high-frequency energy (speckle grain),
and how often a generated band is closer to the real target band than its source is (benchmarks and tests of the
cross-band generators)."""

import torch

HIGH_FREQUENCY = 0.25  # cycles per pixel: above it lies the speckle grain (half the Nyquist frequency)
CHARACTER_KEYS = ("mean", "spread", "high-frequency share")


def band_character(image):
    """{mean, spread, high-frequency share}: per-channel tensors of a C x H x W image in [-1, 1] (read as [0, 1])."""
    values = (image.detach().double().cpu() + 1) / 2
    mean = values.mean(dim=(1, 2))
    spread = values.std(dim=(1, 2))
    power = torch.fft.fft2(values - mean[:, None, None]).abs().square()
    height, width = values.shape[-2:]
    radius = torch.hypot(torch.fft.fftfreq(height)[:, None], torch.fft.fftfreq(width)[None, :])
    share = power[:, radius > HIGH_FREQUENCY].sum(1) / power.sum(dim=(1, 2)).clamp_min(1e-30)
    return dict(zip(CHARACTER_KEYS, (mean, spread, share)))


def closer_counts(sources, generated, targets):
    """For each of mean, spread and high-frequency share: in how many images the generated band is closer to the real
    target than the source is (distances averaged over channels), and the three averages over images and channels
    of the source, generated and target values."""
    counts = dict.fromkeys(CHARACTER_KEYS, 0)
    averages = {(key, label): 0.0 for key in CHARACTER_KEYS for label in ("source", "generated", "target")}
    for source, fake, target in zip(sources, generated, targets):
        character = {"source": band_character(source), "generated": band_character(fake),
                     "target": band_character(target)}
        for key in CHARACTER_KEYS:
            reference = character["target"][key]
            distance = {label: float((character[label][key] - reference).abs().mean())
                        for label in ("source", "generated")}
            counts[key] += distance["generated"] < distance["source"]
            for label in character:
                averages[(key, label)] += float(character[label][key].mean()) / len(sources)
    return counts, averages
