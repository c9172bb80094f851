"""The original pix2pix step (junyanz/pytorch-CycleGAN-and-pix2pix, Pix2PixModel.optimize_parameters), written plainly:
bench_pix2pix's baseline and the tests' oracle.

sargen's step (models/pix2pix_model.py) computes the same values with less overhead (the discriminator's fake and
real passes batched into one call with per-pass batch normalization, fused Adam, small transposed convolutions as
matrix products); these functions keep the original's way, so that the benchmark measures the difference and the
tests check that the values agree.
"""

import torch
import torch.nn.functional as F
from torch import nn

from models.pix2pix_model import gan_loss


def set_requires_grad(network, flag):
    """The original's BaseModel.set_requires_grad."""
    for parameter in network.parameters():
        parameter.requires_grad = flag


def with_torch_transposed_convolutions(network):
    """`network` with its transposed convolutions computed by torch's nn.ConvTranspose2d, as the original's are
    (the same parameters: only the class changes); returns it."""
    for module in network.modules():
        if isinstance(module, nn.ConvTranspose2d):
            module.__class__ = nn.ConvTranspose2d
    return network


def original_training_step(model):
    """The original's step on model's current batch (real_A, real_B) with model's networks and optimizers."""
    model.step += 1
    model.set_learning_rate()
    opt, real_A, real_B = model.opt, model.real_A, model.real_B
    generator, discriminator = model.generator, model.discriminator
    fake_B = generator(real_A)  # forward()

    set_requires_grad(discriminator, True)  # backward_D()
    model.optimizer_D.zero_grad()
    fake_AB = model.pool.query(torch.cat((real_A, fake_B), 1))
    loss_D_fake = gan_loss(discriminator(fake_AB.detach()), False, opt.gan_mode)
    loss_D_real = gan_loss(discriminator(torch.cat((real_A, real_B), 1)), True, opt.gan_mode)
    ((loss_D_fake + loss_D_real) * 0.5).backward()
    model.optimizer_D.step()

    set_requires_grad(discriminator, False)  # backward_G()
    model.optimizer_G.zero_grad()
    loss_G_GAN = gan_loss(discriminator(torch.cat((real_A, fake_B), 1)), True, opt.gan_mode)
    loss_G_L1 = F.l1_loss(fake_B, real_B) * opt.lambda_L1
    (loss_G_GAN + loss_G_L1).backward()
    model.optimizer_G.step()
    return {"G_GAN": loss_G_GAN.detach(), "G_L1": loss_G_L1.detach(), "D_real": loss_D_real.detach(),
            "D_fake": loss_D_fake.detach()}
