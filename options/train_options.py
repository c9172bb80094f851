"""Options of train.py."""

from options.base_options import BaseOptions


class TrainOptions(BaseOptions):
    """Common options plus those of training."""

    is_train = True

    def initialize(self, parser):
        """Add the training options."""
        parser = super().initialize(parser)
        parser.add_argument("--phase", default="train", help="data subfolder to read (train, val, test, ...)")
        parser.add_argument("--continue_train", action="store_true", help="resume from the saved --epoch state")
        return parser
