"""U-GAT-IT inference: the fast translation path, tiled translation of large scenes, and app.py's logic.

The fast path runs the generator in inference mode with its convolutions in bfloat16 where the hardware
has native bfloat16, and channels_last memory on CUDA. Some things stay float32 and keep the output
within 2 grey levels of the float32 forward: the normalization layers (their statistics need the
precision; AdaLIN and LIN fold their blend and affine into one multiply-add), the small linear layers
(CAM, gamma/beta MLP), the encoder up to the middle of its residual blocks, the attention's 1x1
convolution and the output convolution. Rounding in the early encoder spreads to every pixel through
the attention and the gamma/beta MLP: in bfloat16 it alone costs more than half the average error.
``--precision float32`` runs the plain float32 forward, bit for bit.
"""

import argparse
import copy
import logging
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from torch import nn

from data.image_io import (
    GEOREFERENCING_TAGS,
    add_image_options,
    apply_image_limits,
    is_tiff,
    read_image_with_info,
    tensor_to_uint8,
    write_image,
    write_raster,
)
from data.radiometry import (
    output_rule,
    parse_float_pair,
    radiometry_for,
    require_known_radiometry,
    tensor_to_physical,
    translation_domains,
    use_radiometry_record,
)
from data.single_dataset import resolve_image_paths
from models.tiling import NORMALIZATION_TYPES, translate_tiled
from models.ugatit_checkpoint import generator_from_checkpoint, read_checkpoint, sargen_state
from models.ugatit_networks import (
    BOTTLENECK_SCALE,
    ResnetBlock,
    set_fused_statistics,
)
from util.cli import progress
from util.device import add_allocator_option, autocast_dtype, reuse_memory_on_cpu
from util.errors import SargenError
from util.visuals import display_image, heatmap_overlay

logger = logging.getLogger("sargen")

PRECISIONS = ("auto", "float32", "bfloat16")
OUT_UNITS = ("db", "linear", "uint8")


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
        self.dtype = autocast_dtype(self.device, precision)
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


def pad_to_multiple(image, multiple=BOTTLENECK_SCALE):
    """Reflect-pad a CxHxW image at the bottom and right to a multiple of `multiple`; return it and (H, W)."""
    height, width = image.shape[-2:]
    pad_bottom, pad_right = -height % multiple, -width % multiple
    if pad_bottom or pad_right:
        mode = "reflect" if pad_bottom < height and pad_right < width else "replicate"
        image = F.pad(image[None], (0, pad_right, 0, pad_bottom), mode=mode)[0]
    return image, (height, width)


def translate_whole(translator, image):
    """Translate one CxHxW image at its own size (padded to a multiple of 4); return (output, heatmap)."""
    padded, (height, width) = pad_to_multiple(image)
    output, _, heatmap = translator(padded[None])
    return output[0, :, :height, :width], heatmap[0]


# ---- app.py -----------------------------------------------------------------------------------------


def build_app_parser():
    """The command line of app.py (the eo2sar app's, plus folders/globs, tiling and heatmaps)."""
    parser = argparse.ArgumentParser(description="Translate optical (EO) images into SAR-like images with a "
                                                 "U-GAT-IT checkpoint.",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model_path", required=True, help="U-GAT-IT checkpoint (eo2sar or sargen format)")
    parser.add_argument("--img", required=True, help="an image file, a folder or a glob pattern")
    parser.add_argument("--device", default=None, help="cpu or cuda[:N]; default: cuda when present, else cpu")
    parser.add_argument("--out_img_size", type=int, default=256,
                        help="side of the written image when not tiling (0: the input's size)")
    parser.add_argument("--out", default=".", help="output folder, or a file name for a single input")
    parser.add_argument("--heatmap", action="store_true", help="also save the CAM heatmap over the input")
    parser.add_argument("--tile", type=int, default=0,
                        help="translate at the input's own size, tile by tile, with tiles of this many pixels")
    parser.add_argument("--overlap", type=int, default=32, help="pixels shared by neighbouring tiles (--tile)")
    parser.add_argument("--tile_batch", type=int, default=None,
                        help="tiles translated at once (bounds memory); default 4 on CUDA, 1 on the CPU")
    parser.add_argument("--tile_passes", type=int, default=2,
                        help="1: each tile normalized on its own; 2: a first pass pools the normalization "
                             "statistics of the whole image, so tiles agree (twice the work)")
    parser.add_argument("--img_size", type=int, default=None,
                        help="translation size without tiling; default: the checkpoint's (256 for plain files)")
    parser.add_argument("--direction", default="AtoB", choices=("AtoB", "BtoA"), help="genA2B or genB2A")
    parser.add_argument("--precision", default="auto", choices=PRECISIONS,
                        help="auto: bfloat16 where the hardware has it; float32: the plain forward, bit for bit")
    parser.add_argument("--out_unit", default=None, choices=OUT_UNITS,
                        help="value unit of .tif outputs: float32 dB or linear power through --out_db_window, "
                             "or uint8 grey levels as in PNG outputs (default: the training's, from the "
                             "checkpoint's record; db for checkpoints without one)")
    parser.add_argument("--out_db_window", type=parse_float_pair, default=None, metavar="LOW,HIGH",
                        help="LOW,HIGH dB that the model's output range -1..1 stands for (.tif outputs) (default: "
                             "the training's window of the target domain from the checkpoint's record, else -25,0)")
    add_image_options(parser)  # how input images are read: --bands, --intensity_scaling, ...
    add_allocator_option(parser)
    return parser


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
    """gen_sar_NAME.png (.tif for TIFF inputs) in folder `out` for each input, or the file `out` for a single input."""
    out = Path(out)
    if out.suffix and not out.is_dir():
        if len(image_paths) > 1:
            raise SargenError(f"--out {out} is a file name but --img names {len(image_paths)} images: "
                              f"give a folder")
        return [out]
    return [out / f"gen_sar_{path.stem}{'.tif' if is_tiff(path) else '.png'}" for path in image_paths]


def heatmap_path(path):
    """Where the heatmap of output `path` goes: NAME_heatmap.png beside it."""
    return path.with_name(f"{path.stem}_heatmap.png")


def resize_image(image, size):
    """Resize a CxHxW image in [-1, 1] to `size` (a side or (H, W)) with antialiasing; unchanged if it fits."""
    size = (size, size) if isinstance(size, int) else tuple(size)
    if tuple(image.shape[-2:]) == size:
        return image
    return TF.resize(image, list(size), antialias=True).clamp(-1.0, 1.0)


def translate_file(translator, path, args):
    """Translate one image file as app.py does; return the output and, with --heatmap, the heatmap overlay."""
    output, heatmap, _ = translate_raster(translator, path, args)
    return output, heatmap


def translate_raster(translator, path, args):
    """translate_file, also returning the input's RasterInfo (scaling window, size, GeoTIFF tags)."""
    output, heatmap, source, info = translate_source(translator, path, args)
    if not args.heatmap:
        return output, None, info
    return output, heatmap_overlay(heatmap, resize_image(source, output.shape[-2:])), info


def translate_source(translator, path, args):
    """Translate one image file as app.py does; return (output in [-1, 1], raw heatmap, source image, RasterInfo).

    The input is read with the image options (--bands, --intensity_scaling, ...; defaults when `args` lacks
    them). A georeferenced input is translated back to its own size, so the result overlays it.
    """
    source_domain = translation_domains(args)[0]
    if is_tiff(path) and not getattr(translator, "radiometry_record", None):
        require_known_radiometry(args, source_domain, path, f"checkpoint {getattr(args, 'model_path', '')}")
    source, info = read_image_with_info(path, translator.input_nc, radiometry_for(args, source_domain))
    source = source * 2.0 - 1.0
    if args.tile:
        output, heatmap = translate_tiled(translator, source, args.tile, args.overlap, args.tile_batch,
                                          args.tile_passes)
        return output, heatmap, source, info
    size = translator.generator.img_size
    resized = resize_image(source, size)
    output, heatmap = translate_whole(translator, resized)
    keep_size = info.georeferenced or not args.out_img_size
    output = resize_image(output, source.shape[-2:] if keep_size else args.out_img_size)
    return output, heatmap, source, info


def write_output(output, target, info, args):
    """Write an output in [-1, 1]: a .tif in --out_unit with the input's georeferencing, else 8-bit PNG/JPEG.

    Only the georeferencing tags are copied: the input's GDAL metadata and no-data value (band names,
    scale/offset, statistics) describe its own values, not the generated SAR.
    """
    if not is_tiff(target):
        if info.georeferenced:
            logger.warning("%s: georeferencing is kept only in .tif outputs", target)
        return write_image(display_image(output, radiometry_for(args, translation_domains(args)[1])), target,
                           value_range=(-1.0, 1.0))
    rule, unit = args.output_rule if hasattr(args, "output_rule") else output_rule(args)
    return write_raster(output_values(output, rule, unit), target, georeferencing(info))


def georeferencing(info):
    """The georeferencing tags of an input's RasterInfo (none of its GDAL metadata or no-data value)."""
    return [tag for tag in info.geotags if tag[0] in GEOREFERENCING_TAGS]


def output_values(output, rule, unit):
    """An output in [-1, 1] as an HxWxC array in `unit`: dB or linear power through `rule`'s window, or 8-bit."""
    if unit == "uint8":
        return tensor_to_uint8(output, (-1.0, 1.0))
    return tensor_to_physical(output, rule, rule.db_window, unit, value_range=(-1.0, 1.0))


def app_main(argv=None):
    """app.py: translate each image named by --img and write gen_sar_NAME.png or .tif (and the heatmap)."""
    args = build_app_parser().parse_args(argv)
    apply_image_limits(args)
    if args.tile and (args.overlap < 0 or (args.tile_batch or 1) < 1 or args.tile_passes < 1):
        raise SargenError(f"--overlap {args.overlap} must be >= 0, --tile_batch {args.tile_batch} and "
                          f"--tile_passes {args.tile_passes} >= 1")
    device = choose_device(args.device)
    reuse_memory_on_cpu(device, args.system_allocator)
    image_paths = resolve_image_paths(args.img)
    targets = output_paths(image_paths, args.out)
    translator = load_translator(args.model_path, args.direction, device, args.precision, args.img_size)
    logger.info("%s: %s", args.model_path, translator.description)
    use_radiometry_record(args, translator.radiometry_record, args.model_path, translation_domains(args)[:1])
    args.output_rule = output_rule(args)
    for path, target in progress(list(zip(image_paths, targets)), desc="translating", unit="image"):
        output, heatmap, info = translate_raster(translator, path, args)
        write_output(output, target, info, args)
        if args.heatmap:
            write_image(heatmap, heatmap_path(target), value_range=(-1.0, 1.0))
        logger.info("wrote %s", target)
    return targets
