"""Translate your optical images into SAR-like ones: python app.py --model_path CKPT --img PATH [options].

See models/ugatit_inference.py (--tile/--overlap for large scenes, --heatmap, --device, --out; GeoTIFF inputs
give GeoTIFF outputs with the same georeferencing, in --out_unit).
"""

from models.ugatit_inference import app_main
from util.cli import run_main

if __name__ == "__main__":
    run_main(app_main)
