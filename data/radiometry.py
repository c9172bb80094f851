"""Radiometry: how a domain's files map to the model's [0, 1] range and back (bands, scaling rule, window, unit,
channels), as one value object per domain, built from the options, a dataset mode's defaults or a model's record.

``--bands`` (1-based, e.g. ``1`` or ``3,2,1``) picks bands before scaling. Scaling rule for pixel
values (``--intensity_scaling``):
- ``auto`` (default): 8-bit images are divided by 255; 16-bit, 32-bit integer and float images
  (typical SAR amplitude or power) are mapped with the per-image ``percentile`` rule.
- ``percentile``: values between the ``--percentiles`` (default 2 and 98) map to 0..1, clipped.
- ``db``: values are converted to dB (10 log10, unless ``--input_unit db``) and the fixed
  ``--db_window`` (default -25..0 dB, the usual Sentinel-1 VV convention) maps to 0..1, clipped.
- ``minmax``: the image's own minimum and maximum map to 0..1.
The window a file was mapped with is returned by ``data.image_io.read_image_with_info``;
``Radiometry.from_unit_range`` maps [0, 1] values back through it (dB or linear power for the db rule).

Per domain: every option has the forms ``--NAME`` (both domains) and ``--NAME_A`` / ``--NAME_B`` (one domain,
wins). What an option leaves open comes from the model's record at test time (``use_radiometry_record``), else
from the dataset mode's defaults (``radiometry_defaults``), else from the defaults above. The channel count is
the network's: ``--input_nc`` for domain A, ``--output_nc`` for domain B.

No-data: pixels equal to the file's no-data value (or ``--nodata`` / ``--nodata_A`` / ``--nodata_B``, which
replace it) and NaN or infinite pixels are masked (data.image_io computes the mask). Measured windows
(percentile, minmax) are measured on valid pixels only, also when a scene is streamed window by window
(``streamed_window``: exact, the same values as on the whole image). Masked pixels are then filled by
mirroring the valid pixels at the no-data edge (``fill_masked``), so the valid pixels next to them are neither
darkened nor brightened; the tiler fills each tile from its own valid pixels and leaves masked pixels out of
its shared normalization statistics.
"""

import dataclasses
import logging
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy import ndimage

from options.number_types import finite_number, parse_band_list, parse_float_pair, parse_percentiles
from util.errors import SargenError

logger = logging.getLogger("sargen")

SCALING_MODES = ("auto", "percentile", "db", "minmax")
INPUT_UNITS = ("linear", "db")
DOMAINS = ("A", "B")
CHANNEL_OPTIONS = {"A": "--input_nc", "B": "--output_nc"}
LUMINANCE_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)
# Field of the value object -> option name (also the key in the records that checkpoints and Gram files carry).
OPTION_NAMES = {"mode": "intensity_scaling", "percentiles": "percentiles", "db_window": "db_window",
                "input_unit": "input_unit", "bands": "bands", "nodata": "nodata"}
OPTIONAL_RECORD_NAMES = ("nodata",)  # records written before no-data masks lack it
NEGATIVE_SHARE_LIMIT = 0.01  # linear power is never negative: more negative pixels than this means dB values


def linear_to_db(values):
    """10 log10 of linear power, floored at -100 dB."""
    return 10.0 * np.log10(np.maximum(values, 1e-10))


def db_to_linear(values):
    """Linear power of dB values."""
    return np.power(10.0, np.asarray(values) / 10.0)


def option_text(value):
    """An option value as typed on the command line: 4,3,2 or -25,0 (None: all)."""
    if value is None:
        return "all"
    if isinstance(value, (tuple, list)):
        return ",".join(f"{item:g}" if isinstance(item, float) else str(item) for item in value)
    return str(value)


@dataclass(frozen=True)
class Radiometry:
    """One domain's reading rule: bands, scaling rule, window or percentiles, unit and the network's channels.

    `domain` (A, B or None for both), `source` (where unset options came from) and `given` (the flags typed on
    the command line, e.g. --bands or --db_window_B) only word the messages; they are not part of the rule.
    """

    mode: str = "auto"
    percentiles: tuple = (2.0, 98.0)
    db_window: tuple = (-25.0, 0.0)
    input_unit: str = "linear"
    bands: tuple | None = None
    nodata: float | None = None  # raw value of masked pixels, replacing the file's own no-data value
    channels: int | None = None
    domain: str | None = field(default=None, compare=False, repr=False)
    source: str = field(default="", compare=False, repr=False)
    given: frozenset = field(default=frozenset(), compare=False, repr=False)
    channel_options: bool = field(default=True, compare=False, repr=False)  # the tool has --input_nc/--output_nc

    @classmethod
    def from_options(cls, opt, domain=None):
        """The rule of `domain` (None: the plain options only) from parsed options; see radiometry_for."""
        return radiometry_for(opt, domain)

    def option(self, name):
        """The flag that set `name` (an OPTION_NAMES value or 'channels') for this domain, or the one to use; None
        for 'channels' where the running tool has no such option (app.py, evaluate.py: a checkpoint or the files
        fix the channels)."""
        if name == "channels":
            return CHANNEL_OPTIONS.get(self.domain, "--input_nc/--output_nc") if self.channel_options else None
        domain_flag = f"--{name}_{self.domain}" if self.domain else f"--{name}"
        return f"--{name}" if f"--{name}" in self.given and domain_flag not in self.given else domain_flag

    def value(self, name):
        """The value of option `name` (or 'channels')."""
        return getattr(self, "channels" if name == "channels" else FIELDS_BY_OPTION[name])

    def is_given(self, name):
        """Whether option `name` was typed on the command line (plain or for this domain)."""
        return any(flag in self.given for flag in (f"--{name}", f"--{name}_{self.domain}"))

    def setting(self, name):
        """'--bands_A 4,3,2', naming where a value not given on the command line came from."""
        text = f"{self.option(name)} {option_text(self.value(name))}"
        return text if self.is_given(name) or not self.source else f"{text} ({self.source})"

    def to_window_unit(self, values):
        """Values in the unit of the window: dB for the db rule on linear input, else unchanged."""
        return linear_to_db(values) if self.mode == "db" and self.input_unit == "linear" else values

    def measured_rule(self, dtype):
        """'percentile' or 'minmax' when the window is measured on the image's values, None when it is fixed."""
        if self.mode == "auto":
            return None if dtype == np.uint8 else "percentile"
        return self.mode if self.mode in ("percentile", "minmax") else None

    def window(self, values, dtype):
        """The (low, high) values mapped to 0 and 1: fixed, or measured on `values` (already in the window unit)."""
        rule = self.measured_rule(dtype)
        if rule is None:
            return (0.0, 255.0) if self.mode == "auto" else tuple(float(value) for value in self.db_window)
        if values.size == 0:  # nothing valid to measure: every pixel is masked
            return 0.0, 0.0
        if rule == "percentile":
            low, high = np.percentile(values, self.percentiles)
            return float(low), float(high)
        return float(values.min()), float(values.max())

    def from_unit_range(self, values, window, unit=None):
        """Map [0, 1] values back through `window` (the inverse of the rule) to float32 in `unit`.

        For the db rule `unit` is ``db`` or ``linear`` (power), by default the --input_unit; for the other
        rules the result is in the file's own unit.
        """
        low, high = window
        physical = np.float32(low) + np.asarray(values, dtype=np.float32) * np.float32(high - low)
        if self.mode == "db" and (unit or self.input_unit) == "linear":
            physical = db_to_linear(physical)
        return physical.astype(np.float32)

    def check_unit(self, values, path):
        """Refuse values that cannot be in this rule's unit: dB read as linear power, or integers read as dB."""
        if self.mode != "db":
            return
        if self.input_unit == "db" and not np.issubdtype(values.dtype, np.floating):
            raise SargenError(f"{path} holds {values.dtype} integers, not dB values, but {self.setting('input_unit')} "
                              f"reads them as dB: give a float dB file, or set {self.option('input_unit')} linear "
                              f"or {self.option('intensity_scaling')}")
        if self.input_unit == "linear" and np.issubdtype(values.dtype, np.floating) and values.size:
            negative = np.count_nonzero(values < 0) / values.size
            if negative > NEGATIVE_SHARE_LIMIT:
                raise SargenError(f"{path} has {negative:.0%} negative pixels, so it holds dB values, not the linear "
                                  f"power that {self.setting('input_unit')} expects: set {self.option('input_unit')} "
                                  f"db")

    def record(self):
        """The rule as plain values (option names as keys, and channels), as checkpoints and Gram files store it."""
        values = {name: getattr(self, attribute) for attribute, name in OPTION_NAMES.items()}
        values = {name: list(value) if isinstance(value, tuple) else value for name, value in values.items()}
        return {**values, "channels": self.channels}

    @classmethod
    def from_record(cls, record, domain=None, source=""):
        """The rule a record (Radiometry.record()) describes; a damaged record is a one-line error naming `source`."""
        try:
            values = {attribute: record.get(name) if name in OPTIONAL_RECORD_NAMES else record[name]
                      for attribute, name in OPTION_NAMES.items()}
            bands, channels = values["bands"], record.get("channels")
            radiometry = cls(mode=str(values["mode"]), percentiles=tuple(float(v) for v in values["percentiles"]),
                             db_window=tuple(float(v) for v in values["db_window"]),
                             input_unit=str(values["input_unit"]),
                             bands=None if bands is None else tuple(int(band) for band in bands),
                             nodata=None if values["nodata"] is None else float(values["nodata"]),
                             channels=None if channels is None else int(channels), domain=domain, source=source)
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise SargenError(f"{source or 'the record'}: its radiometry record of domain {domain} is damaged "
                              f"({type(error).__name__}: {error}); pass the image options instead") from None
        if radiometry.mode not in SCALING_MODES or radiometry.input_unit not in INPUT_UNITS:
            raise SargenError(f"{source}: its radiometry record of domain {domain} names an unknown rule "
                              f"({radiometry.mode}, {radiometry.input_unit})")
        return radiometry

    def describe(self):
        """A short summary for logs and pages: 'bands 4,3,2, percentile 2,98, 3 channels'."""
        if self.mode == "db":
            rule = f"db window {option_text(self.db_window)} dB (files in {self.input_unit})"
        elif self.mode == "percentile":
            rule = f"percentile {option_text(self.percentiles)}"
        elif self.mode == "auto":
            rule = f"auto (8-bit / 255, else percentile {option_text(self.percentiles)})"
        else:
            rule = "minmax"
        channels = f", {self.channels} channel(s)" if self.channels else ""
        nodata = f", no-data {self.nodata:g}" if self.nodata is not None else ""
        return f"bands {option_text(self.bands)}, {rule}{nodata}{channels}"

    def differences(self, other):
        """'--db_window_B -20,0 (training: -25,0)' for each setting of this rule that differs from `other`'s."""
        names = [name for attribute, name in OPTION_NAMES.items()
                 if getattr(self, attribute) != getattr(other, attribute)]
        if self.channels is not None and other.channels is not None and self.channels != other.channels:
            names.append("channels")
        return [f"{self.option(name)} {option_text(self.value(name))} (training: {option_text(other.value(name))})"
                for name in names]



FIELDS_BY_OPTION = {name: attribute for attribute, name in OPTION_NAMES.items()}
IntensityScaling = Radiometry  # the name of the rule before it became per-domain
DEFAULT_SCALING = Radiometry()


def given_options(opt, domain):
    """{option name: (flag, value)} that the command line set for `domain`: --NAME_DOMAIN, else --NAME."""
    given = {}
    for name in OPTION_NAMES.values():
        for flag in ([f"{name}_{domain}"] if domain else []) + [name]:
            value = getattr(opt, flag, None)
            if value is not None:
                given[name] = (f"--{flag}", tuple(value) if isinstance(value, list) else value)
                break
    return given


def network_channels(opt, domain):
    """The channel count of `domain`'s images in the network (--input_nc for A, --output_nc for B), if known."""
    name = {"A": "input_nc", "B": "output_nc"}.get(domain)
    return getattr(opt, name, None) if name else None


def radiometry_for(opt, domain=None):
    """The reading rule of `domain` (A or B; None: the plain options) as `opt` sets it.

    What the command line leaves open comes from the model's record (opt.radiometry_record, set at test time),
    else from the dataset mode's defaults (opt.radiometry_defaults), else from Radiometry's defaults.
    """
    recorded = (getattr(opt, "radiometry_record", None) or {}).get(domain)
    if recorded is not None:
        base = recorded
    else:
        defaults = (getattr(opt, "radiometry_defaults", None) or {}).get(domain)
        base = Radiometry(domain=domain)
        if defaults:
            base = Radiometry(**{FIELDS_BY_OPTION[name]: value for name, value in defaults.items()},
                              domain=domain, source=f"the --dataset_mode {opt.dataset_mode} default")
    given = given_options(opt, domain)
    channels = network_channels(opt, domain) or base.channels
    return dataclasses.replace(base, **{FIELDS_BY_OPTION[name]: value for name, (_, value) in given.items()},
                               channels=channels, domain=domain, given=frozenset(flag for flag, _ in given.values()),
                               channel_options=hasattr(opt, "input_nc"))


def radiometry_is_known(opt, domain):
    """Whether `domain`'s rule was chosen by someone: the model's record, a dataset mode's defaults or an option."""
    return bool((getattr(opt, "radiometry_record", None) or {}).get(domain)
                or (getattr(opt, "radiometry_defaults", None) or {}).get(domain)
                or given_options(opt, domain))


def require_known_radiometry(opt, domain, path, what, pixel_type):
    """Refuse to read the raster `path` of `pixel_type` for `what` (a model without a record) when nothing set the
    rule and its values are ambiguous: 8-bit files read as value / 255, like 8-bit PNGs; 16-bit and float do not."""
    if radiometry_is_known(opt, domain) or np.dtype(pixel_type) == np.uint8:
        return
    raise SargenError(f"{what} records no radiometry and no option says how to read {path} ({pixel_type} pixels; "
                      f"only 8-bit files read without one, as value / 255): pass its bands and "
                      f"scaling, e.g. --bands_{domain} 4,3,2 --intensity_scaling_{domain} percentile for Sentinel-2 "
                      f"or --intensity_scaling_{domain} db --input_unit_{domain} db for Sentinel-1 dB, and for "
                      f"GeoTIFF outputs --out_db_window LOW,HIGH (the dB window of the SAR training images)")


def radiometry_record(opt):
    """{A: record, B: record} of the rules `opt` reads both domains with (stored in checkpoints and Gram files)."""
    return {domain: radiometry_for(opt, domain).record() for domain in DOMAINS}


def use_radiometry_record(opt, record, source, domains=DOMAINS):
    """Make a model file's radiometry record the defaults of `opt`; log what the options change from it.

    `record` is the file's {A: ..., B: ...} (None for files without one: nothing changes); `domains` are those
    the run reads. Returns the lines that differ from training, also logged as one warning.
    """
    if not isinstance(record, dict):
        opt.radiometry_record = None
        return []
    opt.radiometry_record = {domain: Radiometry.from_record(record[domain], domain, f"recorded in {source}")
                             for domain in DOMAINS if domain in record}
    read = [domain for domain in domains if domain in opt.radiometry_record]
    differences = [line for domain in read
                   for line in radiometry_for(opt, domain).differences(opt.radiometry_record[domain])]
    for domain in read:
        logger.info("domain %s radiometry (from %s): %s", domain, source, radiometry_for(opt, domain).describe())
    if differences:
        logger.warning("reading differs from training (%s): %s", source, "; ".join(differences))
    return differences


def translation_domains(opt):
    """(source, target) domains of --direction: (A, B) for AtoB, (B, A) for BtoA."""
    return ("B", "A") if getattr(opt, "direction", "AtoB") == "BtoA" else ("A", "B")


def output_rule(opt):
    """(rule, unit) that turn the model's output back into file values: the inverse of the target domain's reading.

    The dB window and unit are --out_db_window / --out_unit when given (app.py), else the record's target domain
    (its db rule's window and --input_unit; 8-bit levels for other rules, which keep no fixed window). Without a
    record: dB in -25,0 when an option chose how the input is read or gave --out_db_window, else 8-bit levels (an
    8-bit input read by default comes out as 8-bit levels). Differences from the record are logged.
    """
    source, target = translation_domains(opt)
    recorded = (getattr(opt, "radiometry_record", None) or {}).get(target)
    physical = recorded is not None and recorded.mode == "db"
    out_db_window, out_unit = getattr(opt, "out_db_window", None), getattr(opt, "out_unit", None)
    window = out_db_window or (recorded.db_window if physical else DEFAULT_SCALING.db_window)
    if out_unit or physical:
        unit = out_unit or recorded.input_unit
    elif out_db_window or (recorded is None and radiometry_is_known(opt, source)):
        unit = "db"
    else:
        unit = "uint8"
    rule = Radiometry("db", db_window=tuple(window), input_unit="db", domain=target)
    if recorded is not None:
        trained = (recorded.db_window if physical else None, recorded.input_unit if physical else "uint8")
        changes = [f"--{name} {option_text(value)} (training: {option_text(old)})"
                   for name, value, old in (("out_db_window", window, trained[0]), ("out_unit", unit, trained[1]))
                   if old is not None and tuple(np.atleast_1d(value)) != tuple(np.atleast_1d(old))]
        if changes:
            logger.warning("outputs differ from training: %s", "; ".join(changes))
        if not physical and out_unit is None:
            logger.info("domain %s was read with the %s rule, which keeps no fixed window: .tif outputs are 8-bit "
                        "levels (--out_unit db with --out_db_window for dB)", target, recorded.mode)
    return rule, unit


def select_bands(array, bands, path="image", radiometry=None):
    """The 1-based `bands` of an HxWxC array, in that order (all bands when `bands` is None)."""
    if bands is None:
        return array
    return array[:, :, band_indexes(bands, array.shape[2], path, radiometry)]


def band_indexes(bands, count, path="image", radiometry=None):
    """0-based indexes of the 1-based `bands` (all `count` bands when None); an error names a missing band."""
    if bands is None:
        return list(range(count))
    missing = [band for band in bands if not 1 <= band <= count]
    if missing:
        option = radiometry.setting("bands") if radiometry is not None else f"--bands {option_text(bands)}"
        raise SargenError(f"{option}: {path} has {count} band(s), no band {missing[0]}")
    return [band - 1 for band in bands]


def scale_to_unit_range(array, scaling, path="image", valid=None):
    """Map raw pixel values to float32 in [0, 1] by the scaling rule; return them and the (low, high) window.

    `valid` (HxW bool, None: every pixel) marks the pixels the window is measured on; masked pixels come out 0.
    """
    values = scaling.to_window_unit(array.astype(np.float32))
    measured = values if valid is None else values[valid]
    if not np.isfinite(measured).all():
        raise SargenError(f"{path} has NaN or infinite pixels: mask or fill them before use")
    window = scaling.window(measured, array.dtype)
    return map_to_unit_range(values, window, valid), window


def map_to_unit_range(values, window, valid=None):
    """Values already in the window unit mapped linearly from `window` to float32 [0, 1], clipped; masked ones 0.

    A float32 `values` array is overwritten with the result (callers pass a fresh one): a band of a scene's rows
    then needs no second copy.
    """
    low, high = window
    if not high > low:
        return np.zeros(values.shape, dtype=np.float32)
    with np.errstate(over="ignore", invalid="ignore"):  # far outside the window: +-inf, clipped below
        span = np.float32(high - low)
        if np.isfinite(span) and values.dtype == np.float32:
            scaled = np.subtract(values, np.float32(low), out=values)
            np.divide(scaled, span, out=scaled)
        else:  # a window wider than float32's range (pixels near +-3.4e38): inf / inf would be NaN
            scaled = ((values.astype(np.float64) - low) / (high - low)).astype(np.float32)
    np.clip(scaled, 0.0, 1.0, out=scaled)
    if valid is not None:
        scaled[~valid] = 0.0
    return scaled


GATHER_LIMIT = 1 << 22  # values sorted in memory at once when locating an order statistic (16 MB of float32)
SPLITS = 4096  # sub-intervals a pass counts when narrowing down where an order statistic lies


def streamed_window(scaling, dtype, value_chunks):
    """The window scaling.window measures, over values that arrive in chunks (a scene read window by window).

    `value_chunks()` returns a fresh iterator over 1-D float32 arrays of the valid values in the window unit;
    it is called once per pass (a percentile window takes three or four). The result equals scaling.window
    on all the values at once: percentiles are exact order statistics, interpolated as numpy's.
    """
    rule = scaling.measured_rule(dtype)
    if rule is None:
        return scaling.window(np.empty(0, np.float32), dtype)
    count, low, high = value_range(value_chunks)
    if count == 0:
        return 0.0, 0.0
    if rule == "minmax":
        return float(low), float(high)
    quantiles = np.asarray(scaling.percentiles, dtype=np.float64) / 100
    virtual = (count - 1) * quantiles  # numpy's "linear" method (Hyndman and Fan's 7th)
    previous = np.clip(np.floor(virtual), 0, count - 1).astype(np.int64)
    following = np.clip(previous + 1, 0, count - 1)
    gamma = virtual - np.floor(virtual)
    values = order_statistics(value_chunks, sorted({*previous.tolist(), *following.tolist()}), count, low, high)
    result = [interpolate(values[before], values[after], weight)
              for before, after, weight in zip(previous.tolist(), following.tolist(), gamma)]
    return float(result[0]), float(result[1])


def value_range(value_chunks):
    """(count, minimum, maximum) of the values of every chunk, in one pass."""
    count, low, high = 0, np.inf, -np.inf
    for chunk in value_chunks():
        if chunk.size:
            count += chunk.size
            low, high = min(low, chunk.min()), max(high, chunk.max())
    return count, low, high


def interpolate(before, after, weight):
    """numpy.percentile's linear interpolation between two neighbouring order statistics."""
    difference = after - before
    return after - difference * (1 - weight) if weight >= 0.5 else before + difference * weight


def order_statistics(value_chunks, ranks, count, low, high):
    """{rank: value} for 0-based `ranks` of the sorted values of all chunks (count, min and max known).

    Each pass counts, for every open interval (one known to hold a rank), the values in SPLITS
    sub-intervals and keeps the one that holds the rank; once an interval holds at most GATHER_LIMIT
    values (or one distinct value), a pass collects them and the rank is read off their sorted order.
    """
    whole = (np.float64(low), np.nextafter(np.float64(high), np.inf))  # [low, high): every value
    where = {rank: (whole, 0) for rank in ranks}  # rank -> (interval holding it, values below the interval)
    inside_counts = {whole: count}
    found = {}
    while len(found) < len(ranks):
        open_intervals = {where[rank][0] for rank in ranks if rank not in found}
        passes = {interval: IntervalPass(interval, inside_counts[interval] <= GATHER_LIMIT)
                  for interval in open_intervals}
        for chunk in value_chunks():
            for interval_pass in passes.values():
                interval_pass.add(chunk)
        for rank in ranks:
            if rank not in found:
                interval, below = where[rank]
                value, narrower, earlier = passes[interval].locate(rank - below)
                if narrower is None:
                    found[rank] = value
                else:
                    where[rank] = (narrower[:2], below + earlier)
                    inside_counts[narrower[:2]] = narrower[2]
    return found


class IntervalPass:
    """One pass of order_statistics over the values in [low, high): collect them, or count them by sub-interval."""

    def __init__(self, interval, gather):
        """Prepare to collect the values of `interval` (gather) or to count them in SPLITS sub-intervals."""
        self.low, self.high = interval
        self.gather = gather
        self.edges = None if gather else np.unique(np.linspace(self.low, self.high, SPLITS + 1))
        self.values, self.smallest, self.largest = [], np.inf, -np.inf
        self.counts = None if gather else np.zeros(len(self.edges) - 1, np.int64)

    def add(self, chunk):
        """Take the chunk's values that fall in the interval."""
        inside = chunk[(chunk >= self.low) & (chunk < self.high)]
        if not inside.size:
            return
        if self.gather:
            self.values.append(inside)
            return
        bins = np.searchsorted(self.edges, inside, side="right") - 1
        self.counts += np.bincount(bins, minlength=len(self.counts))
        self.smallest, self.largest = min(self.smallest, inside.min()), max(self.largest, inside.max())

    def locate(self, position):
        """(value, None, 0) for the `position`-th smallest value of the interval when known, else
        (None, (sub-interval low, high, its count), values below the sub-interval in the interval)."""
        if self.gather:
            return np.sort(np.concatenate(self.values))[position], None, 0
        if self.smallest == self.largest:  # one distinct value left
            return self.smallest, None, 0
        cumulative = np.cumsum(self.counts)
        index = int(np.searchsorted(cumulative, position, side="right"))
        earlier = int(cumulative[index - 1]) if index else 0
        return None, (self.edges[index], self.edges[index + 1], int(self.counts[index])), earlier


def fill_masked(image, valid, empty_value=0.5):
    """A CxHxW tensor whose masked pixels (`valid` HxW False) are filled by mirroring the valid ones at the edge.

    Each masked pixel takes the value of its mirror image through its nearest valid pixel (at a straight
    no-data edge: the reflection padding the networks use at image borders), or of that nearest valid pixel
    where the mirror image is masked too or outside the image. Valid pixels next to no-data then see
    texture like their own instead of a constant: measured on a half-no-data scene, a mean fill shifted the
    valid half's tiled translation by 12 grey levels on average, nearest-pixel fill by 3.3, the mirror by 2.1.
    An image without valid pixels is filled with `empty_value`.
    """
    if valid is None:
        return image
    valid = np.asarray(valid, dtype=bool)
    if valid.all():
        return image
    if not valid.any():
        return torch.full_like(image, empty_value)
    invalid = ~valid
    nearest_rows, nearest_columns = ndimage.distance_transform_edt(invalid, return_distances=False,
                                                                   return_indices=True)
    rows, columns = np.nonzero(invalid)
    nearest_rows, nearest_columns = nearest_rows[rows, columns], nearest_columns[rows, columns]
    mirror_rows, mirror_columns = 2 * nearest_rows - rows, 2 * nearest_columns - columns
    height, width = valid.shape
    usable = (mirror_rows >= 0) & (mirror_rows < height) & (mirror_columns >= 0) & (mirror_columns < width)
    usable[usable] = valid[mirror_rows[usable], mirror_columns[usable]]
    source_rows = torch.from_numpy(np.where(usable, mirror_rows, nearest_rows))
    source_columns = torch.from_numpy(np.where(usable, mirror_columns, nearest_columns))
    filled = image.clone()
    filled[:, torch.from_numpy(rows), torch.from_numpy(columns)] = image[:, source_rows, source_columns]
    return filled


def convert_channels(array, channels, path="image", radiometry=None):
    """Give an HxWxC float array `channels` channels: 1 band is repeated, 3 become 1 by luminance, else an error."""
    bands = array.shape[2]
    if channels is None or bands == channels:
        return array
    if channels == 1 and bands == 3:
        return (array @ LUMINANCE_WEIGHTS)[:, :, None]
    if bands == 1:
        return np.repeat(array, channels, axis=2)
    radiometry = radiometry or Radiometry(channel_options=False)  # no rule given: no channel option to name
    example = ",".join(str(band) for band in range(1, channels + 1))
    channel_option = radiometry.option("channels")
    pick = (f"pick {channels} band(s) with {radiometry.option('bands')} (e.g. {radiometry.option('bands')} "
            f"{example})")
    if channel_option is None:
        raise SargenError(f"{path} has {bands} band(s) (after --bands) but {channels} channel(s) are needed: {pick}")
    raise SargenError(f"{path} has {bands} band(s) (after --bands) but the network takes {channels} channel(s) "
                      f"({channel_option}): {pick} or set {channel_option} {bands}")


def grey(images):
    """A BxCxHxW batch as Bx1xHxW grey: ITU-R 601 luminance of 3 channels, else the channels' mean."""
    if images.shape[1] == 1:
        return images
    if images.shape[1] == 3:
        weights = torch.as_tensor(LUMINANCE_WEIGHTS, dtype=images.dtype, device=images.device)
        return torch.einsum("bchw,c->bhw", images, weights)[:, None]
    return images.mean(dim=1, keepdim=True)


def to_channels(images, channels):
    """A BxCxHxW batch with `channels` channels: unchanged if it has them, else its grey image repeated.

    This is convert_channels' rule (1 repeated, 3 to 1 by luminance), extended to any pair of counts for the
    places where a network must take another domain's image (U-GAT-IT's identity mappings, Gatys' start image).
    """
    if images.shape[1] == channels:
        return images
    return grey(images).expand(-1, channels, -1, -1)


def tensor_to_physical(image, scaling, window, unit=None, value_range=(0.0, 1.0)):
    """A CxHxW float tensor in `value_range` as an HxWxC float32 array in the scaling rule's physical unit."""
    low, high = value_range
    unit_values = ((image.detach().float().cpu().clamp(low, high) - low) / (high - low)).numpy()
    return scaling.from_unit_range(unit_values.transpose(1, 2, 0), window, unit)


def set_radiometry_defaults(parser, defaults, what):
    """Make {domain: {option: value}} the defaults below the options (opt.radiometry_defaults), named in --help."""
    parser.set_defaults(radiometry_defaults=defaults)
    for action in parser._actions:
        for domain, values in defaults.items():
            name = action.dest[:-2] if action.dest.endswith(f"_{domain}") else None
            if name in values:
                action.help = f"{action.help} (default: {option_text(values[name])}, {what})"
    return parser


def add_radiometry_options(parser):
    """Add band selection and the pixel scaling rule, each as --NAME (both domains) and --NAME_A / --NAME_B."""
    specs = {
        "bands": ({"type": parse_band_list},
                  "1-based bands to read, e.g. 1 (VV) or 4,3,2 (Sentinel-2 RGB) (default: all)"),
        "intensity_scaling": ({"choices": SCALING_MODES},
                              "how pixel values map to the model range: auto, percentile, db, minmax "
                              "(default: auto; see data/radiometry.py)"),
        "percentiles": ({"type": parse_percentiles}, "LOW,HIGH percentiles of the percentile rule (default: 2,98)"),
        "db_window": ({"type": parse_float_pair, "metavar": "LOW,HIGH"},
                      "dB window of the db rule, mapped to the model range (default: -25,0)"),
        "input_unit": ({"choices": INPUT_UNITS}, "unit of float SAR pixels for the db rule (default: linear)"),
        "nodata": ({"type": finite_number, "metavar": "VALUE"},
                   "raw pixel value that marks no-data, replacing the file's own no-data value (NaN pixels are "
                   "always no-data) (default: the file's)"),
    }
    group = parser.add_argument_group("image radiometry (--NAME sets both domains, --NAME_A / --NAME_B one, and "
                                      "wins; unset: the model's record at test time, else the dataset mode's "
                                      "default)")
    for name, (kwargs, text) in specs.items():
        group.add_argument(f"--{name}", default=None, help=text, **kwargs)
        for domain in DOMAINS:
            group.add_argument(f"--{name}_{domain}", default=None, help=f"--{name} for domain {domain} only",
                               **kwargs)
    return parser
