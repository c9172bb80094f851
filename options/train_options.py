"""Options of train.py."""

from evaluation.training import add_training_evaluation_options
from options.base_options import BaseOptions
from options.number_types import fraction, integer, non_negative_int, port, positive_int


class TrainOptions(BaseOptions):
    """Common options plus those of training."""

    is_train = True

    def initialize(self, parser):
        """Add the training options."""
        parser = super().initialize(parser)
        parser.add_argument("--phase", default="train", help="data subfolder to read (train, val, test, ...)")
        parser.add_argument("--max_nodata", type=fraction, default=0.0,
                            help="skip training patches (images after resizing and cropping) whose no-data fraction "
                                 "is over this (0: any no-data pixel; 1: keep all); skips are counted and reported")
        return parser


def add_iterative_training_options(parser):
    """Add resuming and pix2pix's logging, saving and visdom display options (models that train by steps)."""
    parser.add_argument("--continue_train", action="store_true", help="resume from the saved --epoch state")
    parser.add_argument("--print_freq", type=positive_int, default=100, help="log the losses every this many steps")
    parser.add_argument("--save_freq", type=positive_int, default=1000, help="save a checkpoint every this many steps")
    parser.add_argument("--display_freq", type=positive_int, default=400,
                        help="show the current images on visdom every this many steps")
    parser.add_argument("--update_html_freq", type=positive_int, default=1000,
                        help="save the current images to the training HTML page every this many steps")
    parser.add_argument("--no_html", action="store_true", help="do not write checkpoints/NAME/web/index.html")
    parser.add_argument("--display_id", type=integer(), default=1,
                        help="visdom window id; 0 or less: no visdom display")
    parser.add_argument("--display_server", default="http://localhost", help="visdom server address")
    parser.add_argument("--display_port", type=port, default=8097, help="visdom server port")
    parser.add_argument("--display_env", default="main", help="visdom environment (default: main)")
    parser.add_argument("--display_ncols", type=non_negative_int, default=4,
                        help="images per row in the visdom image window")
    add_training_evaluation_options(parser)  # --eval_freq, --best_metric: scores over steps and best_net
    return parser
