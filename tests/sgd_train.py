"""train.py with plain SGD in place of Adam, saving the gradients each update received (the DDP tests).

DistributedDataParallel promises gradients: the ranks' averaged gradients equal one process's on the global batch,
up to float rounding. Adam's first step moves every weight by about lr x sign(gradient), so a near-zero gradient
whose rounding differs flips a weight by a whole lr: its weights cannot be compared across CPUs. SGD's step is the
gradient times lr, so equal gradients give equal weights within lr x that rounding.

Run under torchrun as `python tests/sgd_train.py GRADIENT_FILE TRAIN_OPTIONS...` (each rank writes
GRADIENT_FILE.rankN), or in-process with train_with_sgd().
"""

import os
import sys
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


class GradientRecordingSGD(torch.optim.SGD):
    """SGD called with Adam's arguments (betas, fused... are ignored); keeps each step's gradients in `steps`."""

    created = []  # every instance, in creation order (U-GAT-IT: G, then D)

    def __init__(self, params, lr, weight_decay=0.0, **_adam_only):
        """Plain SGD with the learning rate and weight decay given."""
        super().__init__(params, lr=lr, weight_decay=weight_decay)
        self.steps = []
        GradientRecordingSGD.created.append(self)

    def step(self, closure=None):
        """Record the gradients (None where a parameter has none), then update."""
        self.steps.append([None if parameter.grad is None else parameter.grad.detach().clone()
                           for group in self.param_groups for parameter in group["params"]])
        return super().step(closure)


def train_with_sgd(argv, gradient_file):
    """Run train.main(argv) with GradientRecordingSGD as torch.optim.Adam; save [optimizer][step][parameter]
    gradients to `gradient_file`."""
    import train

    adam, GradientRecordingSGD.created = torch.optim.Adam, []
    torch.optim.Adam = GradientRecordingSGD
    try:
        train.main([str(arg) for arg in argv])
    finally:
        torch.optim.Adam = adam
    torch.save([optimizer.steps for optimizer in GradientRecordingSGD.created], gradient_file)


if __name__ == "__main__":
    train_with_sgd(sys.argv[2:], f"{sys.argv[1]}.rank{os.environ.get('RANK', '0')}")


def assert_same_gradients(rank_records, single_record, names, tolerance=1e-3):
    """Every rank recorded the same gradients, and they equal one process's (`single_record`) within `tolerance` x
    each gradient's scale: its largest magnitude, floored at a tenth of the optimizer's largest (gradients that
    are zero by construction, such as a bias before a normalization, hold rounding noise: measured up to 1.2e-6 of
    the largest); return the largest gradient magnitude."""
    for other in rank_records[1:]:
        for ddp_steps, other_steps in zip(rank_records[0], other):
            for ddp_gradients, other_gradients in zip(ddp_steps, other_steps):
                assert all(a is None and b is None or torch.equal(a, b)
                           for a, b in zip(ddp_gradients, other_gradients)), "the ranks' gradients differ"
    assert len(rank_records[0]) == len(single_record) == len(names)
    largest = 0.0
    for name, ddp_steps, single_steps in zip(names, rank_records[0], single_record):
        assert len(ddp_steps) == len(single_steps) >= 1, name
        for step, (ddp_gradients, single_gradients) in enumerate(zip(ddp_steps, single_steps), 1):
            assert len(ddp_gradients) == len(single_gradients), name
            assert [gradient is None for gradient in ddp_gradients] == [gradient is None
                                                                        for gradient in single_gradients], name
            pairs = [(ddp, single) for ddp, single in zip(ddp_gradients, single_gradients) if single is not None]
            optimizer_scale = max(single.abs().max().item() for _, single in pairs)
            largest = max(largest, optimizer_scale)
            for index, (ddp, single) in enumerate(pairs):
                scale = max(single.abs().max().item(), 0.1 * optimizer_scale)
                difference = (ddp - single).abs().max().item()
                assert difference <= tolerance * scale, (f"{name} step {step} gradient {index} differs by "
                                                         f"{difference:g} (its scale {scale:g})")
    return largest


def assert_sgd_weights_agree(ddp_state, single_state, bound, what):
    """Weights after SGD steps from equal gradients: each tensor of `ddp_state` within `bound` (learning rate x the
    gradients' tolerance) plus float rounding of its values of `single_state`'s."""
    assert list(ddp_state) == list(single_state), what
    for key, tensor in single_state.items():
        difference = (ddp_state[key].float() - tensor.float()).abs().max().item()
        rounding = 4 * torch.finfo(torch.float32).eps * tensor.float().abs().max().item()
        assert difference <= bound + rounding, f"{what}.{key} differs by {difference:g}"
