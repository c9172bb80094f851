"""Metrics of generated images: python evaluate.py --fake_dir DIR --real_dir DIR [--out DIR], or --results RESULTS.

Writes metrics.json, metrics.csv and, where the output folder has an index.html, its metrics section (see
README, "Evaluating results"; the metrics are defined in the evaluation package).
"""

import logging

from data.image_io import apply_image_limits
from evaluation.options import parse_options
from evaluation.run import evaluate
from util.cli import run_main

logger = logging.getLogger("sargen")


def main(argv=None):
    """Parse options, score the images and write the report."""
    opt = parse_options(argv)
    apply_image_limits(opt)
    _, written = evaluate(opt)
    for path in written:
        logger.info("wrote %s", path)


if __name__ == "__main__":
    run_main(main)
