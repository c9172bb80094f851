"""Options of test.py."""

from options.base_options import BaseOptions
from options.number_types import integer


class TestOptions(BaseOptions):
    """Common options plus those of testing."""

    is_train = False

    def initialize(self, parser):
        """Add the test options."""
        parser = super().initialize(parser)
        parser.add_argument("--results_dir", default="./results", help="results go to RESULTS_DIR/NAME/PHASE_EPOCH")
        parser.add_argument("--phase", default="test", help="data subfolder to read (train, val, test, ...)")
        parser.add_argument("--num_test", type=integer(0, allowed=(-1,)), default=50,
                            help="how many images to process (-1: all)")
        parser.add_argument("--skip_existing", action="store_true",
                            help="leave out images an earlier run already finished (their page rows are kept)")
        return parser
