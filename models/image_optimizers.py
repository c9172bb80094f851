"""Optimizers for a batch of images in which each image is optimized independently of the others."""

import torch


class BatchedLBFGS(torch.optim.Optimizer):
    """L-BFGS with a fixed step (torch's LBFGS without line search), run separately for each image.

    One call of step() uses one gradient, so one network pass makes one step. Curvature pairs come
    from the actual change of each image (after any clamping), and dot products are per image, so
    an image's trajectory does not depend on the rest of the batch.
    """

    def __init__(self, images, lr=1.0, history_size=20, tolerance_grad=1e-7, tolerance_change=1e-9):
        """Optimize the BxCxHxW leaf tensor `images`."""
        super().__init__([images], {"lr": lr})
        self.images = images
        self.history_size = history_size
        self.tolerance_grad = tolerance_grad
        self.tolerance_change = tolerance_change
        self.steps_taken = 0
        self.step_history, self.gradient_history, self.inverse_curvature = [], [], []
        self.previous_images = self.previous_gradient = None
        self.hessian_diagonal = torch.ones(images.shape[0], device=images.device)

    def _flat(self, tensor):
        """View a batch tensor as B x N."""
        return tensor.reshape(tensor.shape[0], -1)

    @torch.no_grad()
    def _remember(self, gradient):
        """Add this step's curvature pair (per image; pairs with no curvature get zero weight)."""
        image_change = self._flat(self.images) - self.previous_images
        gradient_change = gradient - self.previous_gradient
        curvature = (image_change * gradient_change).sum(1)
        valid = curvature > 1e-10
        self.step_history.append(image_change)
        self.gradient_history.append(gradient_change)
        self.inverse_curvature.append(torch.where(valid, 1.0 / curvature.clamp_min(1e-10), 0.0))
        squared_norm = (gradient_change * gradient_change).sum(1).clamp_min(1e-30)
        self.hessian_diagonal = torch.where(valid, curvature / squared_norm, self.hessian_diagonal)
        if len(self.step_history) > self.history_size:
            del self.step_history[0], self.gradient_history[0], self.inverse_curvature[0]

    @torch.no_grad()
    def _direction(self, gradient):
        """The L-BFGS two-loop recursion, per image."""
        direction = -gradient
        coefficients = []
        for image_change, gradient_change, weight in reversed(list(zip(
                self.step_history, self.gradient_history, self.inverse_curvature))):
            alpha = weight * (image_change * direction).sum(1)
            direction = direction - alpha[:, None] * gradient_change
            coefficients.append(alpha)
        direction = direction * self.hessian_diagonal[:, None]
        for (image_change, gradient_change, weight), alpha in zip(zip(
                self.step_history, self.gradient_history, self.inverse_curvature), reversed(coefficients)):
            beta = weight * (gradient_change * direction).sum(1)
            direction = direction + image_change * (alpha - beta)[:, None]
        return direction

    @torch.no_grad()
    def step(self, closure=None):
        """Move each image along its L-BFGS direction using the gradient in images.grad."""
        lr = self.param_groups[0]["lr"]
        gradient = self._flat(self.images.grad).float()
        if self.steps_taken == 0:
            direction = -gradient
            step_size = torch.clamp(1.0 / gradient.abs().sum(1).clamp_min(1e-30), max=1.0) * lr
        else:
            self._remember(gradient)
            direction = self._direction(gradient)
            step_size = torch.full_like(self.hessian_diagonal, lr)
        converged = gradient.abs().amax(1) <= self.tolerance_grad
        not_descending = (gradient * direction).sum(1) > -self.tolerance_change
        step_size = torch.where(converged | not_descending, 0.0, step_size)
        self.previous_images = self._flat(self.images).clone()
        self.previous_gradient = gradient
        self.images.add_((direction * step_size[:, None]).view_as(self.images).to(self.images.dtype))
        self.steps_taken += 1


def make_image_optimizer(name, images, lr, history_size=20):
    """Adam (per-element, so per image by nature) or the per-image L-BFGS."""
    if name == "adam":
        return torch.optim.Adam([images], lr=lr)
    if name == "lbfgs":
        return BatchedLBFGS(images, lr=lr, history_size=history_size)
    raise ValueError(f"unknown optimizer {name}")
