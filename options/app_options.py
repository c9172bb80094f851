"""Options of app.py (translate your own images with a trained generator), used by models/file_translation.py."""

import argparse

from data.image_io import add_image_options, apply_image_limits
from models.tiling import add_tiling_options
from options.number_types import MAX_IMAGE_SIDE, integer, network_side, parse_float_pair
from util.cli import ArgumentParser
from util.device import add_allocator_option

PRECISIONS = ("auto", "float32", "bfloat16")
OUT_UNITS = ("db", "linear", "uint8")


class AppOptions:
    """app.py's command line: the eo2sar app's options, plus folders and globs, tiling, heatmaps and outputs."""

    def build_parser(self):
        """The parser of app.py's options."""
        parser = ArgumentParser(description="Translate optical (EO) images into SAR-like images with a "
                                            "U-GAT-IT, pix2pix or feed-forward generator checkpoint.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        parser.add_argument("--model_path", required=True,
                            help="generator checkpoint: U-GAT-IT (eo2sar or sargen format), --model gatys_feedforward "
                                 "or --model pix2pix (told apart by what the file holds)")
        parser.add_argument("--img", required=True, help="an image file, a folder or a glob pattern")
        parser.add_argument("--device", default=None,
                            help="cpu or cuda[:N]; default: cuda when present, else cpu; under torchrun each process "
                                 "of a machine takes cuda:LOCAL_RANK (give cuda or cpu)")
        parser.add_argument("--out_img_size", type=integer(0, MAX_IMAGE_SIDE), default=256,
                            help="side of the written image when not tiling (0: the input's size)")
        parser.add_argument("--out", default=".", help="output folder, or a file name for a single input")
        parser.add_argument("--overwrite", action="store_true",
                            help="replace existing output files that sargen did not write (never an input)")
        parser.add_argument("--heatmap", action="store_true", help="also save the CAM heatmap over the input")
        add_tiling_options(parser, "translate at the input's own size, tile by tile, with tiles of this many "
                                   "pixels; rasters are read a tile and written a few rows at a time")
        parser.add_argument("--img_size", type=network_side, default=None,
                            help="translation size without tiling; default: the checkpoint's (256 for plain files)")
        parser.add_argument("--direction", default="AtoB", choices=("AtoB", "BtoA"),
                            help="genA2B or genB2A; the input is read with domain A's (or B's) image options")
        parser.add_argument("--precision", default="auto", choices=PRECISIONS,
                            help="auto: mixed bfloat16 on CUDA GPUs that have it, float32 on the CPU; float32: the "
                                 "plain forward, bit for bit; bfloat16: mixed bfloat16 anywhere")
        parser.add_argument("--out_unit", default=None, choices=OUT_UNITS,
                            help="value unit of .tif outputs: float32 dB or linear power through --out_db_window "
                                 "(no-data: NaN), or uint8 grey levels as in PNG outputs (no-data: 0) (default: the "
                                 "training's, from the checkpoint's record; without one, uint8 when nothing says how "
                                 "the input is read, db once an image option or --out_db_window is given)")
        parser.add_argument("--out_db_window", type=parse_float_pair, default=None, metavar="LOW,HIGH",
                            help="LOW,HIGH dB that the model's output range -1..1 stands for (.tif outputs) "
                                 "(default: the training's window of the target domain from the checkpoint's "
                                 "record, else -25,0)")
        parser.add_argument("--skip_bad", action="store_true",
                            help="log an input that cannot be translated (unreadable, wrong band count, over "
                                 "--max_pixels) once, list it as failed in manifest.json and go on (default: stop)")
        parser.add_argument("--skip_existing", action="store_true",
                            help="leave inputs whose output (and heatmap) an earlier run completed; half-written "
                                 "outputs of a killed run are never taken for complete ones")
        add_image_options(parser)  # how input images are read: --bands, --intensity_scaling, --nodata, ...
        add_allocator_option(parser)
        return parser

    def parse(self, argv=None):
        """Parse and check the command line; apply --max_pixels."""
        self.parser = self.build_parser()
        opt = self.parser.parse_args(argv)
        apply_image_limits(opt)
        return opt
