"""What VGG Gram elements respond to: one image per channel pair (i, j), i <= j, maximizing the mean product
of the two channel maps, per layer, as upper-triangular grids.

python visualization/StyleVisualization.py --model VGG16 --layers_ids 3 --n_channels 16 --vgg_weights random
"""

import sys
from pathlib import Path

# Run as a script, Python puts visualization/ and not the repository root on sys.path: add the root.
REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from util.cli import run_main
from visualization.feature_optimization import parse_options, visualize


def main():
    """Parse the options and visualize the Gram elements of every chosen layer."""
    visualize(*parse_options("style"))


if __name__ == "__main__":
    run_main(main)
