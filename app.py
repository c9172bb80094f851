"""Translate your own images with a trained generator: python app.py --model_path CKPT --img PATH [options].

See models/file_translation.py (--tile/--overlap for large scenes, --heatmap, --device, --out; GeoTIFF inputs
give GeoTIFF outputs with the same georeferencing, in --out_unit). The checkpoint may be U-GAT-IT's (eo2sar or
sargen format) or --model gatys_feedforward's: models/translators.py tells them apart by what the file holds.
"""

from models.file_translation import app_main
from util.cli import run_main

if __name__ == "__main__":
    run_main(app_main)
