"""U-GAT-IT inference: the fast translation path, tiled translation of large scenes, and app.py's logic.

The mixed-precision path runs the generator in inference mode with its convolutions in bfloat16 and
channels_last memory on CUDA. Some things stay float32: the normalization layers (their statistics need
the precision; AdaLIN and LIN fold their blend and affine into one multiply-add), the small linear
layers (CAM, gamma/beta MLP), the encoder up to the middle of its residual blocks, the attention's 1x1
convolution and the output convolution. Rounding in the early encoder spreads to every pixel through
the attention and the gamma/beta MLP: in bfloat16 it alone costs more than half the average error.
``--precision auto`` (the default) uses it on CUDA GPUs with bfloat16 and float32 on the CPU: on a
checkpoint of the published shape with every weight perturbed by 0.02 x randn the mixed path reached 3
grey levels from float32 (0.43 on average), more than the 2 allowed. ``--precision bfloat16`` asks for it
anywhere; ``float32`` runs the plain float32 forward, bit for bit.

app.py: 8-bit images are resized as the published eo2sar app resizes them (Pillow's bilinear filter on
the 8-bit image), so its outputs agree with the app's within a grey level; with ``--tile`` a raster is
read, translated and written a band of tile rows at a time (models.tiling.translate_rows) into a
Cloud-Optimized GeoTIFF with the input's georeferencing, or a PNG.
"""

import copy
import functools
import logging
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from data.image_io import (
    ImageRowsWriter,
    RasterWriter,
    SceneReader,
    is_gdal_raster,
    is_tiff,
    read_image_resized,
    read_image_with_info,
    tensor_to_uint8,
    write_image,
    write_raster,
)
from data.radiometry import (
    Radiometry,
    output_rule,
    radiometry_for,
    require_known_radiometry,
    tensor_to_physical,
    translation_domains,
    use_radiometry_record,
)
from data.single_dataset import resolve_image_paths
from models.tiling import NORMALIZATION_TYPES, TilePlan, pad_to_multiple, translate_rows, translate_tiled
from models.ugatit_checkpoint import generator_from_checkpoint, read_checkpoint, sargen_state
from models.ugatit_networks import (
    ResnetBlock,
    set_fused_statistics,
)
from options.app_options import AppOptions
from util.cli import progress
from util.device import autocast_dtype, reuse_memory_on_cpu
from util.errors import SargenError
from util.visuals import display_channel_count, display_image, heatmap_overlay

logger = logging.getLogger("sargen")

OUT_NODATA = {"db": math.nan, "linear": math.nan, "uint8": 0}  # no-data value of .tif outputs per --out_unit
OUT_UNIT_NAMES = {"db": "dB", "linear": "linear power", "uint8": "grey level"}


def _float32_inputs(module, inputs):
    """Forward pre-hook: cast a normalization layer's inputs to float32 (statistics need the precision)."""
    return tuple(value.float() if torch.is_tensor(value) else value for value in inputs)


def _inputs_in_weight_dtype(module, inputs):
    """Forward pre-hook: cast a convolution's or linear layer's inputs to the dtype of its weights."""
    return tuple(value.to(module.weight.dtype) if torch.is_tensor(value) else value for value in inputs)


def float32_convolutions(generator):
    """The convolutions the fast path keeps in float32: the early encoder's, the attention's 1x1 and the output's."""
    # "early": up to the middle of the encoder's residual blocks, whose rounding reaches every pixel
    encoder = list(generator.DownBlock)
    later_blocks = sum(isinstance(layer, ResnetBlock) for layer in encoder) // 2
    early = [module for layer in encoder[: len(encoder) - later_blocks] for module in layer.modules()
             if isinstance(module, nn.Conv2d)]
    output = [module for module in generator.UpBlock2 if isinstance(module, nn.Conv2d)][-1]
    return early + [generator.conv1x1, output]


def use_mixed_precision(generator, dtype):
    """Store the generator's convolutions in `dtype` but a few in float32; return the pre-hooks that cast inputs."""
    kept = {id(module) for module in float32_convolutions(generator)}
    hooks = []
    for module in generator.modules():
        if isinstance(module, nn.Conv2d):
            if id(module) not in kept:
                module.to(dtype)
            hooks.append(module.register_forward_pre_hook(_inputs_in_weight_dtype))
        elif isinstance(module, nn.Linear):
            hooks.append(module.register_forward_pre_hook(_inputs_in_weight_dtype))
        elif isinstance(module, NORMALIZATION_TYPES):
            hooks.append(module.register_forward_pre_hook(_float32_inputs))
    set_fused_statistics(generator, True)
    return hooks


class Translator:
    """A generator in eval mode on a device, run with the fast inference settings."""

    def __init__(self, generator, device, precision="auto"):
        """Move `generator` to `device` and choose arithmetic and memory layout for `precision`."""
        self.device = torch.device(device)
        # auto: float32 on the CPU (see the module docstring), mixed bfloat16 on CUDA GPUs that have it
        self.dtype = None if precision == "auto" and self.device.type == "cpu" else autocast_dtype(self.device,
                                                                                                   precision)
        self.channels_last = self.device.type == "cuda" and precision != "float32"
        if self.dtype is not None:
            generator = copy.deepcopy(generator)  # the caller's network keeps its float32 weights
        self.generator = generator.eval().requires_grad_(False).to(self.device)
        if self.channels_last:
            self.generator = self.generator.to(memory_format=torch.channels_last)
        self.hooks = use_mixed_precision(self.generator, self.dtype) if self.dtype is not None else []

    @property
    def input_nc(self):
        """Channels the generator expects."""
        return self.generator.input_nc

    @property
    def description(self):
        """The network and arithmetic, for logs and result pages."""
        g = self.generator
        return (f"{'light' if g.light else 'full'} generator ngf {g.ngf}, {g.n_blocks} residual blocks, "
                f"img_size {g.img_size}, {g.input_nc}->{g.output_nc} channels, "
                f"{self.dtype or torch.float32} on {self.device}")

    def __call__(self, images):
        """Translate a Bx C x H x W batch in [-1, 1]; return float32 (output, cam_logit, heatmap) on the CPU."""
        with torch.inference_mode():
            images = images.to(self.device)
            if self.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            output, cam_logit, heatmap = self.generator(images)
            return output.float().cpu(), cam_logit.float().cpu(), heatmap.float().cpu()


def load_translator(model_path, direction="AtoB", device="cpu", precision="auto", img_size=None):
    """A Translator for genA2B (AtoB) or genB2A (BtoA) of a U-GAT-IT checkpoint file."""
    payload = read_checkpoint(model_path)
    name = "genA2B" if direction == "AtoB" else "genB2A"
    translator = Translator(generator_from_checkpoint(payload, name, model_path, img_size), device, precision)
    translator.radiometry_record = sargen_state(payload).get("radiometry")  # how training read each domain
    return translator


def translate_whole(translator, image):
    """Translate one CxHxW image at its own size (padded to a multiple of 4); return (output, heatmap)."""
    padded, (height, width) = pad_to_multiple(image)
    output, _, heatmap = translator(padded[None])
    return output[0, :, :height, :width], heatmap[0]


# ---- app.py -----------------------------------------------------------------------------------------


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
    if out.suffix and not out.is_dir():
        if len(image_paths) > 1:
            raise SargenError(f"--out {out} is a file name but --img names {len(image_paths)} images: "
                              f"give a folder")
        return [out]
    return [out / f"gen_sar_{path.stem}{'.tif' if is_gdal_raster(path) else '.png'}" for path in image_paths]


def heatmap_path(path):
    """Where the heatmap of output `path` goes: NAME_heatmap.png beside it."""
    return path.with_name(f"{path.stem}_heatmap.png")


def resize_image(image, size):
    """Resize a CxHxW image in [-1, 1] to `size` (a side or (H, W)) with antialiasing; unchanged if it fits."""
    size = (size, size) if isinstance(size, int) else tuple(size)
    if tuple(image.shape[-2:]) == size:
        return image
    return F.interpolate(image[None], size=size, mode="bilinear", antialias=True)[0].clamp(-1.0, 1.0)


def input_scaling(translator, path, args):
    """How app.py reads `path`: the source domain's rule (A for AtoB, B for BtoA) from the options and the
    checkpoint's record; a raster nothing says how to read is refused."""
    source_domain = translation_domains(args)[0]
    if is_tiff(path) and not getattr(translator, "radiometry_record", None):
        require_known_radiometry(args, source_domain, path, f"checkpoint {getattr(args, 'model_path', '')}")
    return radiometry_for(args, source_domain)


def translate_file(translator, path, args):
    """Translate one image file as app.py does; return the output and, with --heatmap, the heatmap overlay."""
    output, heatmap, _ = translate_raster(translator, path, args)
    return output, heatmap


def translate_raster(translator, path, args):
    """translate_file, also returning the input's RasterInfo (scaling window, size, georeferencing, mask)."""
    output, heatmap, source, info = translate_source(translator, path, args)
    if not args.heatmap:
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
        output, heatmap = translate_tiled(translator, source, args.tile, args.overlap, args.tile_batch,
                                          args.tile_passes, valid=info.valid)
        return output, heatmap, source, info
    size = translator.generator.img_size
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
            "SARGEN_TILE": f"{args.tile} overlap {args.overlap} passes {args.tile_passes}" if args.tile else "none"}


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
    """A SceneReader's bands of rows in the model range [-1, 1], counted on a progress bar (translate_rows' source)."""

    def __init__(self, scene, bar):
        """Wrap `scene`; `bar` advances once per band read."""
        self.scene, self.bar = scene, bar
        self.height, self.width = scene.height, scene.width

    def rows(self, top, bottom):
        """Rows [top, bottom) in [-1, 1] and their valid mask."""
        image, valid = self.scene.rows(top, bottom)
        self.bar.update(1)
        return image.mul_(2.0).sub_(1.0), valid  # in place: the band is fresh, and a scene band is large


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

    The scene is read window by window (its scaling window measured in a streamed pass first), so memory is
    bounded by the tile rows in flight. With --heatmap the heatmap overlay is written at the heatmap's own
    resolution, a quarter of the scene's.
    """
    with SceneReader(path, translator.input_nc, input_scaling(translator, path, args)) as scene:
        plan = TilePlan(scene.height, scene.width, args.tile, args.overlap, translator.generator)
        total = len(plan.row_starts) * args.tile_passes
        with progress(total=total, desc=Path(path).name, unit="tile row", leave=False) as bar, \
                open_output(target, scene.info, translator.generator.output_nc, args) as writer:
            heatmap = translate_rows(translator, ModelRangeRows(scene, bar), args.tile, args.overlap,
                                     args.tile_batch, args.tile_passes, functools.partial(write_output_rows, writer,
                                                                                          args), args.heatmap)
        if args.heatmap and heatmap is not None:
            preview = scene.reduced(*heatmap.shape[-2:]) * 2.0 - 1.0
            write_image(heatmap_overlay(heatmap, preview), heatmap_path(target), value_range=(-1.0, 1.0))


def app_main(argv=None):
    """app.py: translate each image named by --img and write gen_sar_NAME.png or .tif (and the heatmap)."""
    args = AppOptions().parse(argv)
    device = choose_device(args.device)
    reuse_memory_on_cpu(device, args.system_allocator)
    image_paths = resolve_image_paths(args.img)
    targets = output_paths(image_paths, args.out)
    translator = load_translator(args.model_path, args.direction, device, args.precision, args.img_size)
    logger.info("%s: %s", args.model_path, translator.description)
    use_radiometry_record(args, translator.radiometry_record, args.model_path, translation_domains(args)[:1])
    resolve_output_settings(args)
    for path, target in progress(list(zip(image_paths, targets)), desc="translating", unit="image"):
        if args.tile:
            translate_scene(translator, path, target, args)
        else:
            output, heatmap, info = translate_raster(translator, path, args)
            write_output(output, target, info, args)
            if args.heatmap:
                write_image(heatmap, heatmap_path(target), value_range=(-1.0, 1.0))
        logger.info("wrote %s", target)
    return targets
