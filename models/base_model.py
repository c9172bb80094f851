"""The model base class: the options hook and the protocol train.py and test.py drive."""

from abc import ABC, abstractmethod
from pathlib import Path


class BaseModel(ABC):
    """A model built from options; subclasses implement the training and test steps they support.

    The abstract methods are what every model provides; a class that leaves one of them unimplemented is a base
    class, never offered as a --model choice (util.registry).

    train.py calls: setup(), then for each batch of training_batches(dataset): set_input(batch),
    optimize_parameters(), after_step(); then finish_training().
    test.py calls: setup(), then for each batch: set_input(batch), test(), get_current_results().
    """

    @staticmethod
    def modify_commandline_options(parser, is_train):
        """Add model-specific options or change defaults; the base class adds none."""
        return parser

    def __init__(self, opt):
        """Remember the options, the device and the checkpoint folder."""
        self.opt = opt
        self.is_train = opt.is_train
        self.device = opt.device
        self.save_dir = Path(opt.checkpoints_dir) / opt.name
        self.start_step = 0

    def setup(self):  # noqa: B027  (an optional hook, not abstract)
        """Load what the run needs (saved states, targets) before the loop starts."""

    def training_batches(self, dataset):
        """An iterable of batches for train.py; models that train implement it."""
        raise NotImplementedError(f"--model {self.opt.model} has no training step")

    def num_training_steps(self, dataset):
        """How many batches training_batches yields, for the progress bar."""
        return None

    @abstractmethod
    def set_input(self, batch):
        """Take a batch from the dataset."""
        raise NotImplementedError

    def optimize_parameters(self):
        """Run one training step on the current batch."""
        raise NotImplementedError

    def after_step(self, progress_bar=None):  # noqa: B027  (an optional hook)
        """Log, save or display after a training step; nothing by default."""

    def finish_training(self):  # noqa: B027  (an optional hook)
        """Save the final state after the last step."""

    @abstractmethod
    def test(self):
        """Produce results for the current batch."""
        raise NotImplementedError(f"--model {self.opt.model} has no test step")

    @abstractmethod
    def get_current_results(self):
        """A list of util.results.ImageResult, one per image of the current batch."""
        raise NotImplementedError

    def raster_outputs(self):
        """The util.results.RasterOutputs that writes GeoTIFF results of test.py, or None (PNG only, the default)."""
        return None

    def result_notes(self):
        """Lines shown at the top of the results page (weights used, settings)."""
        return []
