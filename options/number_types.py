"""argparse types of every numeric option: finite, in range, sizes within a stated limit, checked at parse time.

A bad value ends the run before any work with argparse's usage line and one error naming the option, e.g.
``train.py: error: argument --lr: expected a finite number > 0, got nan``. Every tool (train.py, test.py, app.py,
evaluate.py, datasets/make_dataset.py, the visualization scripts) takes its numeric options' types from here.
"""

import argparse
import math

# Stated limits (sizes that fit a machine's memory are far below them; they stop typos such as 100000 before an
# allocation of tens of GiB).
MAX_NETWORK_SIDE = 4096  # px: a side the networks run on at once (--img_size, --load_size, --crop_size, --tile, ...)
MAX_IMAGE_SIDE = 32768  # px: a side of a written image (--out_img_size)
MAX_BATCH = 4096  # images per batch or per tile batch
MAX_SEED = 2**32 - 1  # seeds: numpy's range; torch's seeds derived from them stay in range
MAX_BAND = 65535  # band numbers: GDAL's largest band count
MAX_STEPS = 10**9  # training or optimization steps
MAX_PORT = 65535


def integer(minimum=None, maximum=None, allowed=()):
    """An argparse type: an integer in [minimum, maximum] (either bound may be None), or one of `allowed`."""
    wanted = described("an integer", minimum=minimum, maximum=maximum) + "".join(f" or {value}" for value in allowed)

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {wanted}, got '{text}'") from None
        if value not in allowed and not within(value, minimum, maximum):
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {value}")
        return value
    parse.__name__ = "integer"
    parse.bounds = {"minimum": minimum, "maximum": maximum, "allowed": tuple(allowed)}  # for the tests
    return parse


def real(minimum=None, maximum=None, above=None, below=None):
    """An argparse type: a finite number in [minimum, maximum] and in (above, below) (each bound may be None)."""
    wanted = described("a finite number", minimum=minimum, maximum=maximum, above=above, below=below)

    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {wanted}, got '{text}'") from None
        if not (math.isfinite(value) and within(value, minimum, maximum) and (above is None or value > above)
                and (below is None or value < below)):
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text}")
        return value
    parse.__name__ = "number"
    parse.bounds = {"minimum": minimum, "maximum": maximum, "above": above, "below": below}
    return parse


def within(value, minimum, maximum):
    """Whether minimum <= value <= maximum, a bound of None being open."""
    return (minimum is None or value >= minimum) and (maximum is None or value <= maximum)


def described(what, **bounds):
    """`what` with its bounds in words: 'an integer from 1 to 4096', 'a finite number > 0 and < 1', ..."""
    text = {name: (f"{value:g}" if isinstance(value, float) else str(value)) for name, value in bounds.items()
            if value is not None}
    parts = [f"from {text['minimum']} to {text['maximum']}"] if "minimum" in text and "maximum" in text else [
        f"{sign} {text[name]}" for name, sign in (("minimum", ">="), ("maximum", "<=")) if name in text]
    parts += [f"{sign} {text[name]}" for name, sign in (("above", ">"), ("below", "<")) if name in text]
    return " ".join([what, " and ".join(parts)]) if parts else what


def parse_float_pair(text):
    """Parse 'LOW,HIGH' into two floats with LOW < HIGH (an argparse type)."""
    try:
        low, high = (float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected two numbers LOW,HIGH, got '{text}'") from None
    if not (math.isfinite(low) and math.isfinite(high)):
        raise argparse.ArgumentTypeError(f"expected two finite numbers LOW,HIGH, got '{text}'")
    if not low < high:
        raise argparse.ArgumentTypeError(f"expected LOW < HIGH, got '{text}'")
    return low, high


def parse_percentiles(text):
    """Parse 'LOW,HIGH' percentiles with 0 <= LOW < HIGH <= 100 (an argparse type)."""
    low, high = parse_float_pair(text)
    if low < 0 or high > 100:
        raise argparse.ArgumentTypeError(f"expected percentiles LOW,HIGH from 0 to 100, got '{text}'")
    return low, high


def parse_band_list(text):
    """Parse '1' or '3,2,1' into a tuple of 1-based band numbers (an argparse type)."""
    try:
        bands = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected band numbers such as 1 or 3,2,1, got '{text}'") from None
    if min(bands) < 1 or max(bands) > MAX_BAND:
        raise argparse.ArgumentTypeError(f"expected band numbers from 1 to {MAX_BAND}, got '{text}'")
    return bands


positive_int = integer(1)
non_negative_int = integer(0)
fraction = real(0.0, 1.0)  # from 0 to 1
open_fraction = real(above=0.0, below=1.0)  # strictly between 0 and 1
finite_number = real()
weight = real(0.0)  # a loss weight, weight decay or similar: finite and >= 0
rate = real(above=0.0)  # a learning rate or scale: finite and > 0
network_side = integer(1, MAX_NETWORK_SIDE)
batch_count = integer(1, MAX_BATCH)
step_count = integer(1, MAX_STEPS)
seed = integer(0, MAX_SEED)
port = integer(1, MAX_PORT)
