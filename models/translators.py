"""The translator a checkpoint file holds, whichever model trained it: app.py loads every generator through here.

A translator follows the protocol of models/tiling.py. Each kind of checkpoint is told apart by what the file holds
(its state dicts), not by an option: a kind is (description, test on the loaded payload, translator builder).
"""

from models.feedforward_generator import feedforward_translator, holds_feedforward
from models.pix2pix_checkpoint import holds_pix2pix, pix2pix_translator
from models.ugatit_checkpoint import holds_ugatit
from models.ugatit_inference import ugatit_translator
from util.checkpoint import load_checkpoint
from util.errors import SargenError


def feedforward_for_app(payload, path, direction, device, precision, img_size):
    """A gatys_feedforward translator for app.py (it translates its source band: --direction AtoB only)."""
    if direction != "AtoB":
        raise SargenError(f"{path} is a --model gatys_feedforward generator, which only translates A to B: "
                          f"drop --direction {direction}")
    return feedforward_translator(payload, path, device, precision)


TRANSLATOR_KINDS = (
    ("a U-GAT-IT checkpoint (genA2B/genB2A state dicts)", holds_ugatit, ugatit_translator),
    ("a --model gatys_feedforward checkpoint", holds_feedforward, feedforward_for_app),
    ("a --model pix2pix checkpoint (G state dict)", holds_pix2pix, pix2pix_translator),
)


def load_translator(model_path, direction="AtoB", device="cpu", precision="auto", img_size=None):
    """The translator of the generator in checkpoint file `model_path`, for `direction` on `device`."""
    payload = load_checkpoint(model_path, "checkpoint")
    for _, holds, build in TRANSLATOR_KINDS:
        if holds(payload):
            return build(payload, model_path, direction, device, precision, img_size)
    found = ", ".join(sorted(map(str, payload))[:6]) if isinstance(payload, dict) else type(payload).__name__
    kinds = "; ".join(description for description, _, _ in TRANSLATOR_KINDS)
    raise SargenError(f"{model_path} holds no generator sargen can run (found {found or 'nothing'}): "
                      f"--model_path takes {kinds}")
