"""evaluate.py's work: which images, which metrics (and why), the rows and the report."""

import logging

from data.pairing import CO_REGISTERED, UNPAIRED
from data.radiometry import use_radiometry_record
from evaluation.collect import collect_folders, collect_results, recorded_pairing
from evaluation.evaluator import PAIR_RESIZE_RULE, Evaluator, ImageReader, MetricSuite
from evaluation.features import GramFeatures
from evaluation.inception import FIDFeatures, find_fid_weights
from evaluation.options import generated_radiometry, image_radiometry
from evaluation.perceptual import LPIPSDistance, find_lpips_weights
from evaluation.report import build_report, check_report_paths, write_report
from models.vgg import imagenet_cache_path, imagenet_weights_url
from util.cli import progress
from util.device import parse_gpu_ids, select_device
from util.errors import SargenError

logger = logging.getLogger("sargen")

SUITE_METRICS = {"gram": "gram_distance", "fid": "fid", "lpips": "lpips"}  # settings entry -> metric it computes


def collect(opt):
    """The EvaluationImages of --fake_dir/--real_dir or --results, paired by name unless --unpaired or the real
    folder's pairing.json records it as unpaired (then a note says so).

    In a results folder the label found sets the target domain (fake_B2A: A), and test.py's record of GeoTIFF
    results the target domain's radiometry (options given still win).
    """
    if opt.results is not None:
        images = collect_results(opt.results, opt.fake_label, opt.real_label, opt.real_dir, opt.out)
        opt.fake_label = opt.fake_label or images.fake_label
        record = images.raster_record
        if record is not None:
            use_radiometry_record(opt, {record["domain"]: record["real_radiometry"]}, images.raster_record_path,
                                  (record["domain"],))
    else:
        images = collect_folders(opt.fake_dir, opt.real_dir, opt.fake_prefix, opt.out)
    kind, record = recorded_pairing(opt.real_dir) if opt.real_dir else (None, None)
    if kind == CO_REGISTERED:
        images.pairing += f"; {record} records {opt.real_dir} as co-registered with its source folder"
    if opt.unpaired:
        return images.pair_names("--unpaired")
    if kind == UNPAIRED:
        return images.pair_names(f"{record} records {opt.real_dir} as unpaired (different scenes)")
    return images.pair_names()


def fid_features(opt, device, generated_count, real_count):
    """(FIDFeatures or None, why FID and KID are or are not computed)."""
    if opt.fid == "off":
        return None, "skipped (--no_fid)"
    if min(generated_count, real_count) < 2:
        reason = f"needs at least 2 generated and 2 real images, found {generated_count} and {real_count}"
        if opt.fid == "required":
            raise SargenError(f"--fid: {reason}")
        return None, f"unavailable: {reason}"
    path, reason = find_fid_weights(opt.inception_weights, download=opt.fid == "required")
    if path is None:
        return None, required_or_unavailable(opt.fid, "--fid", reason)
    extractor = FIDFeatures(path, opt.fid_dims, device, opt.batch_size)
    return extractor, f"pytorch-fid's Inception, {opt.fid_dims}-d features, weights {extractor.weights}"


def lpips_distance(opt, device, pairs):
    """(LPIPSDistance or None, why LPIPS is or is not computed)."""
    if opt.lpips == "off":
        return None, "skipped (--no_lpips)"
    if not pairs:
        if opt.lpips == "required":
            raise SargenError("--lpips: LPIPS compares pairs, and no generated image has a real twin of its name")
        return None, "not computed: no pairs"
    path, reason = find_lpips_weights(opt.lpips_net, opt.lpips_weights)
    if path is None:
        return None, required_or_unavailable(opt.lpips, "--lpips", reason)
    distance = LPIPSDistance(opt.lpips_net, path, device)
    return distance, f"lpips package, {opt.lpips_net} backbone, weights {distance.weights}"


def gram_features(opt, device):
    """(GramFeatures or None, why the Gram distance is or is not computed): --vgg_weights unset takes the ImageNet
    file of torchvision's cache and reports the distance unavailable without it; --gram or --vgg_weights imagenet
    download it or fail."""
    if opt.gram == "off":
        return None, "skipped (--no_gram)"
    weights = opt.vgg_weights
    if weights is None:
        cache_path = imagenet_cache_path(opt.vgg)
        if opt.gram == "auto" and not cache_path.is_file():
            return None, (f"unavailable: ImageNet {opt.vgg} weights are not in {cache_path}: download "
                          f"{imagenet_weights_url(opt.vgg)} there (or set TORCH_HOME), or pass --vgg_weights PATH, "
                          f"or --vgg_weights random (seeded; distances then compare only within such runs)")
        weights = "imagenet"
    features = GramFeatures(opt.vgg, weights, opt.style_layer, opt.vgg_seed, device)
    return features, f"{opt.vgg} Grams, weights {features.network.weights_description}"


def required_or_unavailable(mode, option, reason):
    """`reason` (an 'unavailable: ...' note) for a metric left to 'auto'; an error when `option` required it."""
    if mode == "required":
        raise SargenError(f"{option}: {reason.removeprefix('unavailable: ')}")
    return reason


def unavailable_metrics(report):
    """{metric: reason} of the metrics the report could not compute (weights absent, too few images)."""
    notes = {metric: report["settings"].get(setting) for setting, metric in SUITE_METRICS.items()}
    notes.update(report["domain"])
    return {name: note for name, note in notes.items() if isinstance(note, str) and note.startswith("unavailable")}


def build_suite(opt, device, images):
    """The MetricSuite of evaluate.py's options for these images."""
    suite = MetricSuite(tuple(image_radiometry(opt, "real").db_window), opt.enl_window, opt.enl_fraction)
    suite.gram, suite.gram_note = gram_features(opt, device)
    suite.fid, suite.fid_note = fid_features(opt, device, len(images.fakes), len(images.reals))
    suite.lpips, suite.lpips_note = lpips_distance(opt, device, images.pairs)
    return suite


def computed_lines(images, suite, generated_count, real_count):
    """Which metrics are computed and why, one sentence each, for the log and metrics.json."""
    lines = [f"generated images: {generated_count} from {images.fake_source}; real images: {real_count} from "
             f"{images.real_source}"]
    if images.pairs:
        hint = "" if "co-registered" in images.pairing else "; pass --unpaired if the folders hold different scenes"
        lines.append(f"paired metrics (PSNR, SSIM, MAE, RMSE, LPIPS, histogram, texture and Gram distances to the "
                     f"real twin) on {len(images.pairs)} pairs matched by name ({images.pairing}){hint}")
    elif images.unpaired_reason:
        lines.append(f"{images.unpaired_reason}: distribution metrics only")
    elif real_count:
        app_names = not images.results_layout and all(image.name.startswith("gen_sar_") for image in images.fakes)
        hint = " (app.py's outputs gen_sar_NAME: pass --fake_prefix gen_sar_)" if app_names else ""
        lines.append(f"no common names between the generated and the real images{hint}: distribution metrics only")
    if real_count:
        lines.append(f"distribution metrics (FID, KID, dB histogram, texture and Gram distances, SAR statistics of "
                     f"both sets) over {generated_count} generated and {real_count} real images")
    else:
        lines.append("no real images: SAR statistics of the generated images only")
    lines.append(f"FID, KID: {suite.fid_note}")
    lines.append(f"LPIPS: {suite.lpips_note}")
    lines.append(f"Gram distance: {suite.gram_note}")
    return lines


def evaluate(opt):
    """Score the images of the options; write and return (report, files written)."""
    images = collect(opt)
    check_report_paths(images.out_dir, opt.overwrite)
    device = select_device(parse_gpu_ids(opt.gpu_ids))
    real_scaling = image_radiometry(opt, "real")  # its dB window is what 8-bit renderings stand for, too
    generated_reader = ImageReader(generated_radiometry(opt, images), opt.intensity_unit, real_scaling.db_window,
                                   opt.skip_bad, real_scaling if images.raster_record is not None else None)
    real_reader = ImageReader(real_scaling, opt.intensity_unit, real_scaling.db_window, opt.skip_bad)
    generated = first_readable(generated_reader, images.fakes)
    suite = build_suite(opt, device, images)
    for line in computed_lines(images, suite, len(images.fakes), len(images.reals)) + images.notes:
        logger.info("%s", line)  # the plan, before the long part; metrics.json gets it with the counts read
    evaluator = Evaluator(suite, generated.band_labels)
    reals, real_scales = {}, []
    for named in progress(images.reals, desc="real images", unit="image"):
        image = real_reader.read(named)
        if image is not None:
            evaluator.add_real(image, keep=named.name in images.pairs)
            reals[named.name] = named
            real_scales.append(image.scale.description())
    rows = []
    for named in progress(images.fakes, desc="generated images", unit="image"):
        image = generated if named is images.fakes[0] else generated_reader.read(named)
        if image is None:
            continue
        twin = images.pairs.get(named.name)
        real = real_reader.read(twin) if twin is not None and twin.name in reals else None
        rows.append(evaluator.add_generated(image, real))
    outcome = skipped_lines(generated_reader, real_reader)
    if evaluator.resized_pairs:
        outcome.append(f"{len(evaluator.resized_pairs)} pair(s) of different sizes: {PAIR_RESIZE_RULE}")
    for line in outcome:
        logger.info("%s", line)
    lines = computed_lines(images, suite, evaluator.generated.count, evaluator.real.count)
    lines += images.notes + outcome
    settings = {"generated": images.fake_source, "real": images.real_source, "pairing": images.pairing,
                "unpaired": images.unpaired_reason, "generated_radiometry": vars_of(generated_reader.scaling),
                "real_radiometry": vars_of(real_reader.scaling), "intensity_unit": opt.intensity_unit,
                "physical_units": {"generated": generated.scale.description(),
                                   "real": real_scales[0] if real_scales else None},
                **evaluator.settings(),
                "skipped": generated_reader.skipped + real_reader.skipped,
                "without_valid_pixel": generated_reader.without_valid_pixel + real_reader.without_valid_pixel,
                "device": str(device)}
    report = build_report(images.out_dir, rows, evaluator.domain_metrics(), settings, lines)
    return report, write_report(report, images.out_dir, evaluator.plot_series())


def first_readable(reader, images):
    """The first generated image that can be read (it sets the bands the real images are compared in)."""
    for named in images:
        image = reader.read(named)
        if image is not None:
            images.remove(named)
            images.insert(0, named)
            return image
    raise SargenError(f"none of the {len(images)} generated images can be read (--skip_bad skipped them all)")


def skipped_lines(*readers):
    """One line naming the files --skip_bad left out, one naming those without a valid pixel, if any."""
    skipped = [path for reader in readers for path in reader.skipped]
    empty = [path for reader in readers for path in reader.without_valid_pixel]
    return ([f"--skip_bad left out {len(skipped)} unreadable file(s): {', '.join(skipped)}"] if skipped else []) + (
        [f"{len(empty)} file(s) without a valid pixel (all no-data or NaN; their metrics are NaN): "
         f"{', '.join(empty)}"] if empty else [])


def vars_of(scaling):
    """A reading rule as a plain dict (its record: the option names and the channel count)."""
    return scaling.record()
