"""Metrics of generated images: python evaluate.py --fake_dir DIR --real_dir DIR [--out DIR], or --results RESULTS.

Writes metrics.json, metrics.csv and, where the output folder has an index.html, its metrics section (see
docs/evaluation.md; the metrics are defined in the evaluation package). Exit codes: 0 every metric computed,
3 (evaluation.options.EXIT_SOME_UNAVAILABLE) the report written but some metrics unavailable, 2 an error.
"""

import logging

from data.image_io import apply_image_limits
from evaluation.options import EXIT_SOME_UNAVAILABLE, parse_options
from evaluation.run import evaluate, unavailable_metrics
from util.cli import run_main

logger = logging.getLogger("sargen")


def main(argv=None):
    """Parse options, score the images and write the report; return the exit code."""
    opt = parse_options(argv)
    apply_image_limits(opt)
    report, written = evaluate(opt)
    for path in written:
        logger.info("wrote %s", path)
    unavailable = unavailable_metrics(report)
    if unavailable:
        logger.warning("some metrics are unavailable (exit code %d): %s", EXIT_SOME_UNAVAILABLE, ", ".join(unavailable))
        return EXIT_SOME_UNAVAILABLE
    return 0


if __name__ == "__main__":
    run_main(main)
