"""U-GAT-IT inference: the fast translation path (models.file_translation runs it over files, app.py's logic).

The mixed-precision path runs the generator in inference mode with its convolutions in bfloat16 and
channels_last memory on CUDA. Some things stay float32: the normalization layers (their statistics need
the precision; AdaLIN and LIN fold their blend and affine into one multiply-add), the small linear
layers (CAM, gamma/beta MLP), the encoder up to the middle of its residual blocks, the attention's 1x1
convolution and the output convolution. Rounding in the early encoder spreads to every pixel through
the attention and the gamma/beta MLP: in bfloat16 it alone costs more than half the average error.
``--precision auto`` (the default) uses it on CUDA GPUs with bfloat16 and float32 on the CPU: on a
checkpoint of the published shape with every weight perturbed by 0.02 x randn the mixed path reached 3
grey levels from float32 (0.43 on average), more than the 2 allowed. ``--precision bfloat16`` asks for it
anywhere; ``float32`` runs the plain float32 forward, bit for bit.
"""

import copy

import torch
from torch import nn

from models.tile_statistics import NORMALIZATION_TYPES
from models.ugatit_checkpoint import check_checkpoint, generator_from_checkpoint, read_checkpoint, sargen_state
from models.ugatit_networks import ResnetBlock, set_fused_statistics
from util.device import autocast_dtype


def _float32_inputs(module, inputs):
    """Forward pre-hook: cast a normalization layer's inputs to float32 (statistics need the precision)."""
    return tuple(value.float() if torch.is_tensor(value) else value for value in inputs)


def _inputs_in_weight_dtype(module, inputs):
    """Forward pre-hook: cast a convolution's or linear layer's inputs to the dtype of its weights."""
    return tuple(value.to(module.weight.dtype) if torch.is_tensor(value) else value for value in inputs)


def float32_convolutions(generator):
    """The convolutions the fast path keeps in float32: the early encoder's, the attention's 1x1 and the output's."""
    # "early": up to the middle of the encoder's residual blocks, whose rounding reaches every pixel
    encoder = list(generator.DownBlock)
    later_blocks = sum(isinstance(layer, ResnetBlock) for layer in encoder) // 2
    early = [module for layer in encoder[: len(encoder) - later_blocks] for module in layer.modules()
             if isinstance(module, nn.Conv2d)]
    output = [module for module in generator.UpBlock2 if isinstance(module, nn.Conv2d)][-1]
    return early + [generator.conv1x1, output]


def use_mixed_precision(generator, dtype):
    """Store the generator's convolutions in `dtype` but a few in float32; return the pre-hooks that cast inputs."""
    kept = {id(module) for module in float32_convolutions(generator)}
    hooks = []
    for module in generator.modules():
        if isinstance(module, nn.Conv2d):
            if id(module) not in kept:
                module.to(dtype)
            hooks.append(module.register_forward_pre_hook(_inputs_in_weight_dtype))
        elif isinstance(module, nn.Linear):
            hooks.append(module.register_forward_pre_hook(_inputs_in_weight_dtype))
        elif isinstance(module, NORMALIZATION_TYPES):
            hooks.append(module.register_forward_pre_hook(_float32_inputs))
    set_fused_statistics(generator, True)
    return hooks


class Translator:
    """A generator in eval mode on a device, run with the fast inference settings."""

    def __init__(self, generator, device, precision="auto"):
        """Move `generator` to `device` and choose arithmetic and memory layout for `precision`."""
        self.device = torch.device(device)
        # auto: float32 on the CPU (see the module docstring), mixed bfloat16 on CUDA GPUs that have it
        self.dtype = None if precision == "auto" and self.device.type == "cpu" else autocast_dtype(self.device,
                                                                                                   precision)
        self.channels_last = self.device.type == "cuda" and precision != "float32"
        if self.dtype is not None:
            generator = copy.deepcopy(generator)  # the caller's network keeps its float32 weights
        self.generator = generator.eval().requires_grad_(False).to(self.device)
        if self.channels_last:
            self.generator = self.generator.to(memory_format=torch.channels_last)
        self.hooks = use_mixed_precision(self.generator, self.dtype) if self.dtype is not None else []

    has_heatmap = True  # the CAM heatmap of U-GAT-IT's attention

    @property
    def input_nc(self):
        """Channels the generator expects."""
        return self.generator.input_nc

    @property
    def description(self):
        """The network and arithmetic, for logs and result pages."""
        g = self.generator
        return (f"{'light' if g.light else 'full'} generator ngf {g.ngf}, {g.n_blocks} residual blocks, "
                f"img_size {g.img_size}, {g.input_nc}->{g.output_nc} channels, "
                f"{self.dtype or torch.float32} on {self.device}")

    def __call__(self, images):
        """Translate a Bx C x H x W batch in [-1, 1]; return float32 (output, cam_logit, heatmap) on the CPU."""
        with torch.inference_mode():
            images = images.to(self.device)
            if self.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            output, cam_logit, heatmap = self.generator(images)
            return output.float().cpu(), cam_logit.float().cpu(), heatmap.float().cpu()


def ugatit_translator(payload, path, direction="AtoB", device="cpu", precision="auto", img_size=None):
    """A Translator for genA2B (AtoB) or genB2A (BtoA) of a loaded U-GAT-IT checkpoint payload."""
    payload = check_checkpoint(payload, path)
    name = "genA2B" if direction == "AtoB" else "genB2A"
    translator = Translator(generator_from_checkpoint(payload, name, path, img_size), device, precision)
    translator.radiometry_record = sargen_state(payload).get("radiometry")  # how training read each domain
    return translator


def load_translator(model_path, direction="AtoB", device="cpu", precision="auto", img_size=None):
    """A Translator for genA2B (AtoB) or genB2A (BtoA) of a U-GAT-IT checkpoint file."""
    return ugatit_translator(read_checkpoint(model_path), model_path, direction, device, precision, img_size)
