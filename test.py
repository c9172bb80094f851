"""Run a trained model on test images: python test.py --model gatys|gatys_feedforward|ugatit --dataroot DIR --name N.

Under torchrun each rank processes every world_size-th image; rank 0 writes the page with every image.
"""

import logging
from pathlib import Path

from torch.utils.data import Subset

from data import create_dataloader, create_dataset
from models import create_model
from options.base_options import save_options
from options.test_options import TestOptions
from util import distributed
from util.cli import progress, run_main
from util.results import ResultsWriter, result_dir

logger = logging.getLogger("sargen")


def main(argv=None):
    """Parse options, build from the registries, process this rank's images and write the results page."""
    options = TestOptions()
    opt = options.parse(argv)
    dataset = create_dataset(opt)
    count = len(dataset) if opt.num_test < 0 else min(opt.num_test, len(dataset))
    positions = distributed.shard(range(count))
    model = create_model(opt)
    model.setup()
    web_dir = result_dir(opt)
    writer = ResultsWriter(web_dir, f"Experiment = {opt.name}, Phase = {opt.phase}, Epoch = {opt.epoch}",
                           opt.display_winsize, model.result_notes(), Path(opt.checkpoints_dir) / opt.name,
                           model.raster_outputs())
    names = [dataset.item_name(position) for position in range(count)]
    if opt.skip_existing:
        done = len(positions)
        positions = writer.skip_finished(positions, names)
        logger.info("--skip_existing: %d of %d images already done", done - len(positions), done)
    position_of = {names[position]: position for position in positions}
    loader = create_dataloader(Subset(dataset, positions), opt, shuffle=False)
    for batch in progress(loader, desc="testing", unit="batch"):
        model.set_input(batch)
        model.test()
        for result in model.get_current_results():
            writer.add(result, position_of[result.name])
    page = writer.save()
    dataset.report_empty_reads()
    if distributed.is_main():
        save_options(opt, options.parser, web_dir / "test_opt.txt")
        logger.info("results page: %s", page)


if __name__ == "__main__":
    run_main(main)
