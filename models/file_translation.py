"""Translate image files with a trained generator: app.py's logic, for any model's translator (models.translators).

8-bit images are resized as the published eo2sar app resizes them (Pillow's bilinear filter on the 8-bit image), so
its outputs agree with the app's within a grey level; with ``--tile`` a raster is read, translated and written a band
of tile rows at a time (models.tiling.translate_rows) into a Cloud-Optimized GeoTIFF with the input's
georeferencing, or a PNG.
"""

import functools
import logging
import math
from pathlib import Path

import torch
import torch.nn.functional as F

from data.image_io import (
    ImageRowsWriter,
    RasterWriter,
    SceneReader,
    has_valid_pixel,
    is_gdal_raster,
    is_image_file,
    is_tiff,
    read_image_resized,
    read_image_with_info,
    require_reading_rule,
    tensor_to_uint8,
    warn_no_valid_pixel,
    write_image,
    write_raster,
    written_by_sargen,
)
from data.radiometry import (
    Radiometry,
    output_rule,
    radiometry_for,
    tensor_to_physical,
    translation_domains,
    use_radiometry_record,
)
from data.single_dataset import resolve_image_paths
from models.batch_translation import NO_VALID_PIXEL, app_device, translate_batch
from models.tiling import (
    TilePlan,
    pooling_passes,
    tile_reads,
    tiling_arguments,
    translate_rows,
    translate_tiled,
    translate_whole,
)
from models.translators import load_translator
from options.app_options import AppOptions
from util.cli import progress
from util.device import reuse_memory_on_cpu
from util.errors import SargenError
from util.fileio import FileSet, check_output, remove_stale_temporary_files, same_file
from util.visuals import display_channel_count, display_image, heatmap_overlay

logger = logging.getLogger("sargen")

OUTPUT_PREFIX, HEATMAP_SUFFIX = "gen_sar_", "_heatmap"  # gen_sar_NAME.png and gen_sar_NAME_heatmap.png
OUT_NODATA = {"db": math.nan, "linear": math.nan, "uint8": 0}  # no-data value of .tif outputs per --out_unit
OUT_UNIT_NAMES = {"db": "dB", "linear": "linear power", "uint8": "grey level"}


def choose_device(name):
    """The torch device for --device: CUDA when present and not named, else the CPU."""
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise SargenError(f"--device {name} is not a device: use cpu or cuda[:N]") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SargenError(f"--device {name}: CUDA is not available here, use --device cpu")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise SargenError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) here")
    if device.type not in ("cpu", "cuda"):
        raise SargenError(f"--device {name} is not supported: use cpu or cuda[:N]")
    return device


def output_paths(image_paths, out):
    """gen_sar_NAME.png (.tif for GeoTIFF, JPEG2000 and VRT inputs) in folder `out` for each input, or the file
    `out` for a single input."""
    out = Path(out)
    if out.exists() and not out.is_dir() and not is_image_file(out):
        raise SargenError(f"--out {out} is an existing file that is not an image: give a folder or an image file "
                          f"name")
    if out.suffix and not out.is_dir():
        if len(image_paths) > 1:
            raise SargenError(f"--out {out} is a file name but --img names {len(image_paths)} images: "
                              f"give a folder")
        return [out]
    return [out / f"{OUTPUT_PREFIX}{path.stem}{'.tif' if is_gdal_raster(path) else '.png'}" for path in image_paths]


def is_earlier_output(path, out):
    """Whether input `path` is an output an earlier run wrote into the folder `out` (named as app.py names its
    outputs and heatmaps, and written by sargen): a run whose --out is its --img folder leaves those out."""
    path, out = Path(path), Path(out)
    named_so = path.name.startswith(OUTPUT_PREFIX) or path.stem.endswith(HEATMAP_SUFFIX)
    return named_so and out.is_dir() and same_file(path.parent, out) and written_by_sargen(path)


def inputs_and_outputs(args):
    """(input, output) pairs of --img and --out, refused (one line) where an output would replace an input or
    another input's output, or (without --overwrite) a file sargen did not write; earlier outputs in the --out
    folder are not inputs."""
    image_paths = resolve_image_paths(args.img, option="--img")
    earlier = [path for path in image_paths if is_earlier_output(path, args.out)]
    if earlier:
        logger.info("--img: left out %d earlier output(s) of app.py in the --out folder %s", len(earlier), args.out)
        image_paths = [path for path in image_paths if path not in earlier]
        if not image_paths:
            raise SargenError(f"--img {args.img}: only earlier outputs of app.py (gen_sar_*) are there: give the "
                              f"input images")
    targets = output_paths(image_paths, args.out)
    inputs, written = FileSet(image_paths), {}
    for path, target in zip(image_paths, targets):
        for output in [target, heatmap_path(target)] if args.heatmap else [target]:
            key = output.resolve()
            if key in written:
                raise SargenError(f"--img {written[key]} and {path} would both be written to {output} (inputs of "
                                  f"the same name): translate them into different --out folders")
            written[key] = path
            check_output(output, inputs, args.overwrite, written_by_sargen, "--out")
    return list(zip(image_paths, targets))


def heatmap_path(path):
    """Where the heatmap of output `path` goes: NAME_heatmap.png beside it."""
    return path.with_name(f"{path.stem}{HEATMAP_SUFFIX}.png")


def resize_image(image, size):
    """Resize a CxHxW image in [-1, 1] to `size` (a side or (H, W)) with antialiasing; unchanged if it fits."""
    size = (size, size) if isinstance(size, int) else tuple(size)
    if tuple(image.shape[-2:]) == size:
        return image
    return F.interpolate(image[None], size=size, mode="bilinear", antialias=True)[0].clamp(-1.0, 1.0)


def input_scaling(translator, path, args):
    """How app.py reads `path`: the source domain's rule (A for AtoB, B for BtoA) from the options and the
    checkpoint's record; a 16-bit or float raster nothing says how to read is refused (8-bit reads as / 255)."""
    source_domain = translation_domains(args)[0]
    if not getattr(translator, "radiometry_record", None):
        require_reading_rule(args, source_domain, path, f"checkpoint {getattr(args, 'model_path', '')}")
    return radiometry_for(args, source_domain)


def translate_file(translator, path, args):
    """Translate one image file as app.py does; return the output and, with --heatmap, the heatmap overlay."""
    output, heatmap, _ = translate_raster(translator, path, args)
    return output, heatmap


def translate_raster(translator, path, args):
    """translate_file, also returning the input's RasterInfo (scaling window, size, georeferencing, mask)."""
    output, heatmap, source, info = translate_source(translator, path, args)
    if not args.heatmap or heatmap is None:
        return output, None, info
    return output, heatmap_overlay(heatmap, resize_image(source, output.shape[-2:])), info


def translate_source(translator, path, args):
    """Translate one image file in memory; return (output in [-1, 1], raw heatmap, source image, RasterInfo).

    The input is read with the image options (--bands, --intensity_scaling, --nodata, ...; defaults when
    `args` lacks them). Without --tile it is resized to the model's size (8-bit images as the eo2sar app
    does) and a georeferenced input is translated back to its own size, so the result overlays it.
    """
    scaling = input_scaling(translator, path, args)
    if args.tile:
        source, info = read_image_with_info(path, translator.input_nc, scaling)
        source = source * 2.0 - 1.0
        output, heatmap = translate_tiled(translator, source, args.tile, args.overlap, valid=info.valid,
                                          **tiling_arguments(args))
        return output, heatmap, source, info
    size = getattr(translator.generator, "img_size", None) or args.img_size  # None: a fully convolutional network
    if size is None:
        source, info = read_image_with_info(path, translator.input_nc, scaling)
        output, heatmap = translate_whole(translator, source * 2.0 - 1.0)
        return output, heatmap, source * 2.0 - 1.0, info
    resized, source, info = read_image_resized(path, translator.input_nc, scaling, (size, size))
    output, heatmap = translate_whole(translator, resized * 2.0 - 1.0)
    keep_size = info.georeferenced or not args.out_img_size
    output = resize_image(output, source.shape[-2:] if keep_size else args.out_img_size)
    return output, heatmap, source * 2.0 - 1.0, info


def output_mask(valid, size):
    """The input's valid-pixel mask at the output's size (nearest neighbour), or None when all pixels are valid."""
    if valid is None:
        return None
    valid = torch.as_tensor(valid)
    if tuple(valid.shape) != tuple(size):
        valid = F.interpolate(valid[None, None].float(), size=tuple(size), mode="nearest")[0, 0] > 0.5
    return valid.numpy()


def write_output(output, target, info, args):
    """Write an output in [-1, 1]: a .tif COG in --out_unit with the input's georeferencing, else 8-bit PNG/JPEG.

    The input's masked pixels are no-data in the output (transparent in PNGs). Only the georeferencing is
    carried over: the input's metadata and band names describe its own values, not the generated SAR.
    """
    valid = output_mask(info.valid, output.shape[-2:])
    if not is_tiff(target):
        if info.georeferenced:
            logger.warning("%s: georeferencing is kept only in .tif outputs", target)
        return write_image(display_image(output, target_radiometry(args)), target, value_range=(-1.0, 1.0),
                           valid=valid)
    return write_raster_output(output, target, info, args.out_unit, args.out_db_window, output_tags(args))


def write_raster_output(output, target, info, unit, db_window, tags=None):
    """Write an output in [-1, 1] as a Cloud-Optimized GeoTIFF in `unit` (through `db_window`): on the input's
    grid (RasterInfo `info`, None: none) when the sizes agree, the input's masked pixels no-data."""
    valid = None if info is None else output_mask(info.valid, output.shape[-2:])
    same_grid = info is not None and tuple(output.shape[-2:]) == tuple(info.size)
    return write_raster(output_values(output, unit, db_window), target, info if same_grid else None, valid,
                        OUT_NODATA[unit], units=(OUT_UNIT_NAMES[unit],) * output.shape[0], tags=tags)


def output_tags(args):
    """Metadata recorded in .tif outputs: how they were made."""
    return {"SARGEN_MODEL": str(getattr(args, "model_path", "")), "SARGEN_DIRECTION": getattr(args, "direction", ""),
            "SARGEN_OUT_UNIT": args.out_unit, "SARGEN_OUT_DB_WINDOW": ",".join(map(str, args.out_db_window)),
            "SARGEN_TILE": (f"{args.tile} overlap {args.overlap} context {args.tile_context} passes {args.tile_passes}"
                            if args.tile else "none")}


def target_radiometry(args):
    """The reading rule of the target domain (B for AtoB), for false-colour 8-bit outputs."""
    return radiometry_for(args, translation_domains(args)[1])


def resolve_output_settings(args):
    """Fill --out_unit and --out_db_window left unset from the checkpoint's record (data.radiometry.output_rule)."""
    rule, unit = output_rule(args)
    args.out_unit, args.out_db_window = unit, tuple(rule.db_window)


def output_values(output, unit, db_window):
    """An output in [-1, 1] as an HxWxC array in `unit`: dB or linear power through `db_window`, or 8-bit."""
    if unit == "uint8":
        return tensor_to_uint8(output, (-1.0, 1.0))
    rule = Radiometry("db", db_window=tuple(db_window), input_unit="db")
    return tensor_to_physical(output, rule, rule.db_window, unit, value_range=(-1.0, 1.0))


class ModelRangeRows:
    """A SceneReader's windows in the model range [-1, 1], counted on a progress bar (translate_rows' source)."""

    def __init__(self, scene, bar):
        """Wrap `scene`; `bar` advances once per window read (a tile)."""
        self.scene, self.bar = scene, bar
        self.height, self.width = scene.height, scene.width
        self.any_valid = False  # whether a row read so far holds a valid pixel

    def rows(self, top, bottom, left=0, right=None):
        """Rows [top, bottom) of columns [left, right) in [-1, 1] and their valid mask."""
        image, valid = self.scene.rows(top, bottom, left, right)
        self.bar.update(1)
        self.any_valid = self.any_valid or valid is None or bool(valid.any())
        return image.mul_(2.0).sub_(1.0), valid  # in place: the window is fresh


def open_output(target, info, band_count, args):
    """A row writer for `target`: a Cloud-Optimized GeoTIFF in --out_unit for .tif, else an 8-bit image."""
    if is_tiff(target):
        dtype = "uint8" if args.out_unit == "uint8" else "float32"
        return RasterWriter(target, info.size, band_count, dtype, info, OUT_NODATA[args.out_unit],
                            units=(OUT_UNIT_NAMES[args.out_unit],) * band_count, tags=output_tags(args))
    if info.georeferenced:
        logger.warning("%s: georeferencing is kept only in .tif outputs", target)
    return ImageRowsWriter(target, info.size, display_channel_count(band_count))


def write_output_rows(writer, args, top, rows, valid):
    """Hand finished output rows in [-1, 1] to `writer` in its values (--out_unit for .tif, else 8-bit)."""
    if isinstance(writer, RasterWriter):
        values = output_values(rows, args.out_unit, args.out_db_window)
    else:
        values = tensor_to_uint8(display_image(rows, target_radiometry(args)), (-1.0, 1.0))
    writer.write_rows(top, values, None if valid is None else valid.numpy())


def translate_scene(translator, path, target, args):
    """--tile: translate one image a band of tile rows at a time, writing each finished band to `target`.

    The scene is read tile by tile (its scaling window measured in a streamed pass first), so memory is bounded
    by the tiles in flight and one tile row of output. With --heatmap the heatmap overlay is written at the
    heatmap's own resolution, a quarter of the scene's. Returns whether the scene holds a valid pixel.
    """
    with SceneReader(path, translator.input_nc, input_scaling(translator, path, args)) as scene:
        tiling = tiling_arguments(args)
        plan = TilePlan(scene.height, scene.width, args.tile, args.overlap, translator.generator, tiling["context"])
        total = tile_reads(plan, pooling_passes(translator.generator, tiling["passes"]), tiling["statistics_pixels"])
        with progress(total=total, desc=Path(path).name, unit="tile", leave=False) as bar, \
                open_output(target, scene.info, translator.generator.output_nc, args) as writer:
            source = ModelRangeRows(scene, bar)
            heatmap = translate_rows(translator, source, args.tile, args.overlap,
                                     write_rows=functools.partial(write_output_rows, writer, args),
                                     with_heatmap=args.heatmap, **tiling)
        if args.heatmap and heatmap is not None:
            preview = scene.reduced(*heatmap.shape[-2:]) * 2.0 - 1.0
            write_image(heatmap_overlay(heatmap, preview), heatmap_path(target), value_range=(-1.0, 1.0))
    return source.any_valid


def translate_to_file(translator, path, target, args):
    """Translate one input file into `target` (and its heatmap with --heatmap); return the note of its record in
    manifest.json: NO_VALID_PIXEL for an input without a valid pixel (also a warning naming it), else ''."""
    if args.tile:
        any_valid = translate_scene(translator, path, target, args)
    else:
        output, heatmap, info = translate_raster(translator, path, args)
        any_valid = has_valid_pixel(info.valid)
        write_output(output, target, info, args)
        if heatmap is not None:
            write_image(heatmap, heatmap_path(target), value_range=(-1.0, 1.0))
    if any_valid:
        return ""
    warn_no_valid_pixel(path, f"its output {target} is all no-data")
    return NO_VALID_PIXEL


def app_main(argv=None):
    """app.py: translate each image named by --img and write gen_sar_NAME.png or .tif (and the heatmap); under
    torchrun the ranks share the images (models.batch_translation).

    Outputs never replace an input, nor (without --overwrite) a file sargen did not write; temporary files of
    earlier runs that were killed are removed first. Inputs without a valid pixel are named and counted.
    """
    args = AppOptions().parse(argv)
    device = app_device(choose_device(args.device), args.device)
    reuse_memory_on_cpu(device, args.system_allocator)
    pairs = inputs_and_outputs(args)
    translator = load_translator(args.model_path, args.direction, device, args.precision, args.img_size)
    logger.info("%s: %s", args.model_path, translator.description)
    if args.heatmap and not translator.has_heatmap:
        logger.warning("--heatmap: %s gives no attention heatmap; only the translations are written", args.model_path)
    use_radiometry_record(args, translator.radiometry_record, args.model_path, translation_domains(args)[:1])
    resolve_output_settings(args)
    for folder in sorted({target.parent for _, target in pairs}):
        remove_stale_temporary_files(folder)  # of earlier runs that were killed mid-write
    heatmaps = args.heatmap and translator.has_heatmap
    translate_batch(pairs, functools.partial(translate_to_file, translator, args=args), args,
                    lambda target: [target, heatmap_path(target)] if heatmaps else [target])
    return [target for _, target in pairs]
