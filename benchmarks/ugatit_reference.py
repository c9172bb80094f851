"""The U-GAT-IT reference code's computations (znxlwm/UGATIT-pytorch): bench_ugatit's baselines, the tests' oracles.

sargen's product code computes the same values with less work (real and fake batched through each
discriminator, spectral norm applied to the outputs, fused AdaLIN/LIN statistics, detached translations for
the discriminator update); these functions keep the reference's way, so that the benchmark measures the
difference and the tests check that the values agree.
"""

import contextlib

from data.radiometry import to_channels
from models.ugatit_model import discriminator_losses, generator_domain_losses, generator_losses
from models.ugatit_networks import set_fused_statistics


def reference_forward(discriminator, image):
    """The reference's discriminator forward, whose hooks divide every spectral-normalized weight by sigma."""
    return discriminator.score(image, lambda layer, features: layer(features))


def reference_discriminate(discriminators, images):
    """[(patch logit, CAM logit)] of each of `discriminators` on `images` through the reference forward, as float32."""
    outputs = []
    for discriminator in discriminators:
        logit, cam_logit, _ = reference_forward(discriminator, images)
        outputs.append((logit.float(), cam_logit.float()))
    return outputs


@contextlib.contextmanager
def reference_normalization(generators):
    """Within the block the generators' AdaLIN and LIN layers run the reference formula, not the fused one."""
    for generator in generators:
        set_fused_statistics(generator, False)
    try:
        yield
    finally:
        for generator in generators:
            set_fused_statistics(generator, True)


def original_training_step(model):
    """The reference code's step on model's current batch: the benchmark's baseline and the tests' oracle.

    It recomputes the translations for the generator update and backpropagates the discriminator loss
    through both generators, as znxlwm/UGATIT-pytorch does, with its normalization formula and
    spectral-norm hooks; losses and updates equal optimize_parameters' to float rounding.
    """
    with reference_normalization(model.generators):
        _reference_step(model)


def _reference_step(model):
    """The body of original_training_step."""
    model.step += 1
    model.set_learning_rate()
    opt, real_A, real_B, nets = model.opt, model.real_A, model.real_B, model.networks
    discriminators_A, discriminators_B = model.domain_discriminators("A"), model.domain_discriminators("B")
    model.optimizer_D.zero_grad()
    fake_A2B, _, _ = nets["genA2B"](real_A)
    fake_B2A, _, _ = nets["genB2A"](real_B)
    outputs = {"real_A": reference_discriminate(discriminators_A, real_A),
               "real_B": reference_discriminate(discriminators_B, real_B),
               "fake_A": reference_discriminate(discriminators_A, fake_B2A),
               "fake_B": reference_discriminate(discriminators_B, fake_A2B)}
    losses_D = discriminator_losses(outputs, opt)
    (losses_D["D_A"] + losses_D["D_B"]).backward()
    model.optimizer_D.step()

    model.optimizer_G.zero_grad()
    fake_A2B, cam_logit_A2B, _ = nets["genA2B"](real_A)
    fake_B2A, cam_logit_B2A, _ = nets["genB2A"](real_B)
    fake_A2B2A, _, _ = nets["genB2A"](fake_A2B)
    fake_B2A2B, _, _ = nets["genA2B"](fake_B2A)
    fake_A2A, cam_logit_A2A, _ = nets["genB2A"](to_channels(real_A, nets["genB2A"].input_nc))
    fake_B2B, cam_logit_B2B, _ = nets["genA2B"](to_channels(real_B, nets["genA2B"].input_nc))
    fake_outputs_A = reference_discriminate(discriminators_A, fake_B2A)
    fake_outputs_B = reference_discriminate(discriminators_B, fake_A2B)
    losses_A = generator_domain_losses(fake_outputs_A, real_A, fake_A2B2A, fake_A2A, cam_logit_B2A, cam_logit_A2A)
    losses_B = generator_domain_losses(fake_outputs_B, real_B, fake_B2A2B, fake_B2B, cam_logit_A2B, cam_logit_B2B)
    losses_G = generator_losses(losses_A, losses_B, opt)
    losses_G["G"].backward()
    model.optimizer_G.step()
    for generator in model.generators:
        model.rho_clipper(generator)
    model.record_losses(losses_D, losses_G)
