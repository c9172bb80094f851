"""pix2pix's networks (Isola et al., CVPR 2017): U-Net and ResNet generators, PatchGAN discriminators.

The architectures are pix2pix's (junyanz/pytorch-CycleGAN-and-pix2pix): the same layers, channel counts, kernel
sizes, dropout places and weight initialization, so results compare with the papers built on it.

- ``unet_256`` / ``unet_128``: 8 / 7 stride-2 4x4 convolutions down to 1x1, transposed convolutions back up,
  each level's encoder output concatenated to the decoder; inputs have sides that are multiples of 256 / 128
  (``size_multiple``). As in the original, the skip connection carries the encoder output after its leaky ReLU.
- ``resnet_9blocks`` / ``resnet_6blocks``: a 7x7 stem, two stride-2 convolutions, residual blocks, two transposed
  convolutions and a 7x7 output; sides multiples of 4.
- ``basic`` (70x70 PatchGAN, 3 layers), ``n_layers`` (``--n_layers_D``) and ``pixel`` (1x1 PatchGAN)
  discriminators, on the source and the target image stacked (conditional GAN).

Normalization (``--norm``): ``batch`` (pix2pix's default), ``instance`` or ``none``. Convolutions followed by batch
normalization have no bias (it would be cancelled); with instance normalization they have one, as in the
original; with ``none`` too (the original drops it there, leaving those layers without any offset).
"""

import torch
import torch.nn.functional as F
from torch import nn

GENERATORS = ("unet_256", "unet_128", "resnet_9blocks", "resnet_6blocks")
DISCRIMINATORS = ("basic", "n_layers", "pixel")
NORMALIZATIONS = ("batch", "instance", "none")
INIT_TYPES = ("normal", "xavier", "kaiming", "orthogonal")
UNET_DOWNSAMPLINGS = {"unet_256": 8, "unet_128": 7}
RESNET_BLOCKS = {"resnet_9blocks": 9, "resnet_6blocks": 6}
RESNET_DOWNSAMPLINGS = 2
LEAKY_SLOPE = 0.2
DROPOUT = 0.5
KERNEL = 4  # the U-Net's and PatchGAN's 4x4 convolutions
BASIC_LAYERS = 3
MATRIX_PRODUCT_AREA = 64  # feature maps up to 8x8 go through TransposedConvolution's matrix product


class TransposedConvolution(nn.ConvTranspose2d):
    """nn.ConvTranspose2d (the same parameters and state dict) that computes small CPU feature maps (at most
    MATRIX_PRODUCT_AREA pixels) as one matrix product and col2im (F.fold): the same sums, two to four times faster
    there than oneDNN's kernels, whose backward pass is slow on the U-Net's inner levels (1x1 to 8x8)."""

    def forward(self, features, output_size=None):
        """The transposed convolution of a B x C x H x W batch."""
        height, width = features.shape[-2:]
        if (features.device.type != "cpu" or height * width > MATRIX_PRODUCT_AREA or output_size is not None
                or self.groups != 1 or self.dilation != (1, 1)):
            return super().forward(features, output_size)
        columns = features.flatten(2).transpose(1, 2) @ self.weight.flatten(1)  # B x HW x (C_out k k)
        size = tuple((side - 1) * stride - 2 * padding + kernel + extra for side, stride, padding, kernel, extra in
                     zip((height, width), self.stride, self.padding, self.kernel_size, self.output_padding))
        output = F.fold(columns.transpose(1, 2), size, self.kernel_size, stride=self.stride, padding=self.padding)
        return output if self.bias is None else output + self.bias.view(1, -1, 1, 1)


def normalization(norm, channels):
    """The normalization layer of `norm` for `channels` channels (nn.Identity for none)."""
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "instance":
        return nn.InstanceNorm2d(channels)  # no affine, no running statistics: pix2pix's instance norm
    if norm == "none":
        return nn.Identity()
    raise ValueError(f"unknown normalization '{norm}': choose one of {', '.join(NORMALIZATIONS)}")


def has_bias(norm):
    """Whether convolutions followed by `norm` have a bias (not before batch normalization, which cancels it)."""
    return norm != "batch"


class UnetGenerator(nn.Module):
    """pix2pix's U-Net: `downsamplings` stride-2 levels with skip connections, dropout in the deep decoder levels."""

    def __init__(self, input_nc, output_nc, downsamplings=8, ngf=64, norm="batch", dropout=True):
        """Build the encoder (downs) and decoder (ups) levels, outermost first."""
        super().__init__()
        if downsamplings < 5:
            raise ValueError(f"a U-Net needs at least 5 downsamplings, got {downsamplings}")
        self.input_nc, self.output_nc, self.ngf, self.norm = input_nc, output_nc, ngf, norm
        self.size_multiple = 2**downsamplings  # the innermost level is 1x1 at this input side
        bias = has_bias(norm)
        widths = [ngf * min(2**level, 8) for level in range(downsamplings)]
        downs = [nn.Sequential(nn.Conv2d(input_nc, ngf, KERNEL, 2, 1, bias=bias))]
        ups = [nn.Sequential(nn.ReLU(True), TransposedConvolution(2 * ngf, output_nc, KERNEL, 2, 1), nn.Tanh())]
        for level in range(1, downsamplings):
            innermost = level == downsamplings - 1
            down = [nn.Conv2d(widths[level - 1], widths[level], KERNEL, 2, 1, bias=bias)]
            downs.append(nn.Sequential(*down) if innermost else nn.Sequential(*down, normalization(norm,
                                                                                                widths[level])))
            decoder_input = widths[level] if innermost else 2 * widths[level]
            up = [nn.ReLU(True), TransposedConvolution(decoder_input, widths[level - 1], KERNEL, 2, 1, bias=bias),
                  normalization(norm, widths[level - 1])]
            # pix2pix: dropout in the levels between the innermost and the first 8 ngf-wide one (4 .. n-2)
            if dropout and 4 <= level < downsamplings - 1:
                up.append(nn.Dropout(DROPOUT))
            ups.append(nn.Sequential(*up))
        self.downs, self.ups = nn.ModuleList(downs), nn.ModuleList(ups)

    def forward(self, images):
        """Translate a B x input_nc x H x W batch (sides multiples of size_multiple) into B x output_nc x H x W."""
        skips, features = [], images
        for level, down in enumerate(self.downs):
            features = down(features)
            if level < len(self.downs) - 1:
                # the original's in-place leaky ReLU runs on the tensor its skip connection keeps
                features = F.leaky_relu(features, LEAKY_SLOPE)
                skips.append(features)
        decoded = self.ups[-1](features)
        for level in range(len(self.ups) - 2, -1, -1):
            decoded = self.ups[level](torch.cat([skips[level], decoded], 1))
        return decoded

    def description(self):
        """The architecture in words."""
        return (f"U-Net, {len(self.downs)} levels (inputs multiples of {self.size_multiple} px), ngf {self.ngf}, "
                f"{self.norm} norm, {self.input_nc}->{self.output_nc} channels")


class ResnetBlock(nn.Module):
    """Two reflect-padded 3x3 convolutions with normalization (and dropout between them), added to the input."""

    def __init__(self, channels, norm, dropout):
        """Build the block's layers."""
        super().__init__()
        bias = has_bias(norm)
        layers = [nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=bias), normalization(norm, channels),
                  nn.ReLU(True)]
        if dropout:
            layers.append(nn.Dropout(DROPOUT))
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=bias), normalization(norm, channels)]
        self.conv_block = nn.Sequential(*layers)

    def forward(self, features):
        """The input plus the block's output."""
        return features + self.conv_block(features)


class ResnetGenerator(nn.Module):
    """pix2pix's ResNet generator (Johnson et al.): stem, two downsamplings, residual blocks, two upsamplings."""

    size_multiple = 2**RESNET_DOWNSAMPLINGS

    def __init__(self, input_nc, output_nc, blocks=9, ngf=64, norm="batch", dropout=True):
        """Build the network."""
        super().__init__()
        self.input_nc, self.output_nc, self.ngf, self.norm, self.blocks = input_nc, output_nc, ngf, norm, blocks
        bias = has_bias(norm)
        layers = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, 7, bias=bias), normalization(norm, ngf),
                  nn.ReLU(True)]
        channels = ngf
        for _ in range(RESNET_DOWNSAMPLINGS):
            layers += [nn.Conv2d(channels, 2 * channels, 3, 2, 1, bias=bias), normalization(norm, 2 * channels),
                       nn.ReLU(True)]
            channels *= 2
        layers += [ResnetBlock(channels, norm, dropout) for _ in range(blocks)]
        for _ in range(RESNET_DOWNSAMPLINGS):
            layers += [TransposedConvolution(channels, channels // 2, 3, 2, 1, output_padding=1, bias=bias),
                       normalization(norm, channels // 2), nn.ReLU(True)]
            channels //= 2
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(channels, output_nc, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, images):
        """Translate a B x input_nc x H x W batch (sides multiples of 4)."""
        return self.model(images)

    def description(self):
        """The architecture in words."""
        return (f"ResNet, {self.blocks} blocks, ngf {self.ngf}, {self.norm} norm, "
                f"{self.input_nc}->{self.output_nc} channels")


class NLayerDiscriminator(nn.Module):
    """PatchGAN: `layers` stride-2 4x4 convolutions, then two stride-1 ones, giving one logit per patch."""

    def __init__(self, input_nc, ndf=64, layers=BASIC_LAYERS, norm="batch"):
        """Build the network (the basic 70x70 PatchGAN has 3 layers)."""
        super().__init__()
        bias = has_bias(norm)
        sequence = [nn.Conv2d(input_nc, ndf, KERNEL, 2, 1), nn.LeakyReLU(LEAKY_SLOPE, True)]
        width = ndf
        for layer in range(1, layers + 1):
            previous, width = width, ndf * min(2**layer, 8)
            stride = 2 if layer < layers else 1
            sequence += [nn.Conv2d(previous, width, KERNEL, stride, 1, bias=bias), normalization(norm, width),
                         nn.LeakyReLU(LEAKY_SLOPE, True)]
        sequence.append(nn.Conv2d(width, 1, KERNEL, 1, 1))
        self.model = nn.Sequential(*sequence)

    def forward(self, images):
        """B x 1 x h x w patch logits of a B x input_nc x H x W batch."""
        return self.model(images)


class PixelDiscriminator(nn.Module):
    """1x1 PatchGAN: one logit per pixel."""

    def __init__(self, input_nc, ndf=64, norm="batch"):
        """Build the network."""
        super().__init__()
        self.model = nn.Sequential(
            nn.Conv2d(input_nc, ndf, 1), nn.LeakyReLU(LEAKY_SLOPE, True),
            nn.Conv2d(ndf, 2 * ndf, 1, bias=has_bias(norm)), normalization(norm, 2 * ndf),
            nn.LeakyReLU(LEAKY_SLOPE, True), nn.Conv2d(2 * ndf, 1, 1, bias=has_bias(norm)))

    def forward(self, images):
        """B x 1 x H x W pixel logits."""
        return self.model(images)


def stacked_calls(sequence, images, call_sizes):
    """`sequence` applied to the batches of several calls stacked into one (`call_sizes` images each): batch
    normalization in training mode normalizes each call's images by their own statistics and updates its running
    statistics with each in turn, as separate calls do; every other layer runs on the whole stack."""
    features = images
    for layer in sequence:
        if isinstance(layer, nn.BatchNorm2d) and layer.training:
            features = torch.cat([layer(chunk) for chunk in features.split(call_sizes)])
        else:
            features = layer(features)
    return features


class DiscriminatorPasses(nn.Module):
    """The discriminator update's two passes, fake pairs then real pairs, in one forward call (one batch)."""

    def __init__(self, discriminator):
        """Hold the discriminator."""
        super().__init__()
        self.discriminator = discriminator

    def forward(self, fake_pairs, real_pairs):
        """(fake logits, real logits), each as a separate call of the discriminator would give them."""
        count = fake_pairs.shape[0]
        logits = stacked_calls(self.discriminator.model, torch.cat([fake_pairs, real_pairs]),
                               [count, real_pairs.shape[0]])
        return logits[:count], logits[count:]


def build_generator(name, input_nc, output_nc, ngf=64, norm="batch", dropout=True):
    """The generator `name` (one of GENERATORS)."""
    if name in UNET_DOWNSAMPLINGS:
        return UnetGenerator(input_nc, output_nc, UNET_DOWNSAMPLINGS[name], ngf, norm, dropout)
    if name in RESNET_BLOCKS:
        return ResnetGenerator(input_nc, output_nc, RESNET_BLOCKS[name], ngf, norm, dropout)
    raise ValueError(f"unknown generator '{name}': choose one of {', '.join(GENERATORS)}")


def build_discriminator(name, input_nc, ndf=64, n_layers=BASIC_LAYERS, norm="batch"):
    """The discriminator `name` (one of DISCRIMINATORS) on `input_nc` stacked channels."""
    if name == "basic":
        return NLayerDiscriminator(input_nc, ndf, BASIC_LAYERS, norm)
    if name == "n_layers":
        return NLayerDiscriminator(input_nc, ndf, n_layers, norm)
    if name == "pixel":
        return PixelDiscriminator(input_nc, ndf, norm)
    raise ValueError(f"unknown discriminator '{name}': choose one of {', '.join(DISCRIMINATORS)}")


def init_weights(network, init_type="normal", gain=0.02):
    """pix2pix's initialization: convolution weights by `init_type` with `gain`, biases 0; batch-norm scales
    N(1, gain), offsets 0. Returns the network."""
    for module in network.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            if init_type == "normal":
                nn.init.normal_(module.weight, 0.0, gain)
            elif init_type == "xavier":
                nn.init.xavier_normal_(module.weight, gain=gain)
            elif init_type == "kaiming":
                nn.init.kaiming_normal_(module.weight, a=0, mode="fan_in")
            elif init_type == "orthogonal":
                nn.init.orthogonal_(module.weight, gain=gain)
            else:
                raise ValueError(f"unknown initialization '{init_type}': choose one of {', '.join(INIT_TYPES)}")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.normal_(module.weight, 1.0, gain)
            nn.init.zeros_(module.bias)
    return network
