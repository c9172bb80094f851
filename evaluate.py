"""Metrics of generated images: python evaluate.py --results results/NAME/test_latest [--real_dir DIR].

Writes RESULTS/metrics.json, RESULTS/metrics.csv and a metrics section in RESULTS/index.html (see README,
"Evaluating results"; the metrics are defined in evaluation/metrics.py).
"""

import logging

from data.image_io import apply_image_limits
from evaluation.collect import collect_images
from evaluation.evaluator import Evaluator
from evaluation.options import build_parser
from evaluation.report import build_report, write_report
from util.cli import progress, run_main

logger = logging.getLogger("sargen")


def main(argv=None):
    """Parse options, collect the images, compute the metrics image by image and write the report."""
    opt = build_parser().parse_args(argv)
    apply_image_limits(opt)
    images = collect_images(opt.results, opt.fake_label, opt.real_label, opt.real_dir)
    logger.info("%d generated images (%s), %d real target images (%s)", len(images.pairs), images.fake_label,
                len(images.real_domain), images.real_source)
    evaluator = Evaluator(opt, images)
    for path in progress(images.real_domain, desc="real target images", unit="image"):
        evaluator.add_real(path)
    rows = [evaluator.evaluate_pair(pair) for pair in progress(images.pairs, desc="generated images", unit="image")]
    report = build_report(images.results_dir, rows, evaluator.domain_metrics(), evaluator.settings())
    for path in write_report(report, images.results_dir):
        logger.info("wrote %s", path)


if __name__ == "__main__":
    run_main(main)
