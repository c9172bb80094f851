"""Run a trained model on the test images: python test.py --model gatys|ugatit --dataroot DIR --name NAME."""

import logging

from torch.utils.data import Subset

from data import create_dataloader, create_dataset
from models import create_model
from options.base_options import save_options
from options.test_options import TestOptions
from util.cli import progress, run_main
from util.results import ResultsWriter, result_dir

logger = logging.getLogger("sargen")


def main(argv=None):
    """Parse options, build from the registries, process each batch and write the results page."""
    options = TestOptions()
    opt = options.parse(argv)
    dataset = create_dataset(opt)
    dataset = Subset(dataset, range(min(opt.num_test, len(dataset)))) if opt.num_test >= 0 else dataset
    model = create_model(opt)
    model.setup()
    web_dir = result_dir(opt)
    writer = ResultsWriter(web_dir, f"Experiment = {opt.name}, Phase = {opt.phase}, Epoch = {opt.epoch}",
                           opt.display_winsize, model.result_notes())
    loader = create_dataloader(dataset, opt, shuffle=False)
    for batch in progress(loader, desc="testing", unit="batch"):
        model.set_input(batch)
        model.test()
        for result in model.get_current_results():
            writer.add(result)
    save_options(opt, options.parser, web_dir / "test_opt.txt")
    logger.info("results page: %s", writer.save())


if __name__ == "__main__":
    run_main(main)
