"""Adam in NumPy, computed as ``torch.optim.Adam`` computes it on the CPU.

The defaults are torch's (betas (0.9, 0.999), eps 1e-8; no weight decay, no amsgrad), and so is
the arithmetic, operation by operation and in the same order (torch/optim/adam.py,
``_single_tensor_adam``, the path torch takes for CPU tensors), with every hyperparameter a
Python float that NumPy, like torch, rounds to the parameters' dtype where it meets an array:

    t += 1
    m = m + (1 - beta1) * (g - m)              # exp_avg.lerp_(grad, 1 - beta1)
    v = v * beta2 + ((1 - beta2) * g) * g      # exp_avg_sq.mul_(beta2).addcmul_(grad, grad, 1 - beta2)
    step_size = lr / (1 - beta1**t)            # Python floats (double precision)
    denom = sqrt(v) / sqrt(1 - beta2**t) + eps # (1 - beta2**t) ** 0.5 as a Python float
    p = p + (-step_size * m) / denom           # param.addcdiv_(exp_avg, denom, value=-step_size)

What is left differs by at most a rounding per operation, and is measured, not hidden
(tests/test_optim.py): torch's vectorised CPU kernels fuse the multiply and add of ``lerp`` and
``addcmul`` (one FMA, one rounding), which NumPy cannot express, and its vectorised ``sqrt`` is
not always correctly rounded (NumPy's is). So ``m``, ``v`` and the parameters may differ from
torch's in their last bit; over many steps these roundings stay at the level of the gradients'
own (summation-order) differences.
"""

from __future__ import annotations

import numpy as np

from cnnbench.ops.checks import check_array

# Each parameter is updated a piece of at most this many bytes at a time, all of the update's
# dozen passes over one piece before the next: the seed network's fc1 (2 MB, with its moments,
# gradient and scratch 12 MB) would otherwise stream through the caches a dozen times a step.
# The same arithmetic on every element, so the same bytes; 2-3 % of a training step on a 2-core
# Xeon (2 MiB L2), in-process A/B at 1 and 2 threads.
CHUNK_BYTES = 256 * 1024


class Adam:
    """Adam over a dict of parameter arrays, updated in place by :meth:`step`.

    ``parameters``: name -> floating array (e.g. ``Network.parameters``); the moments have each
    parameter's dtype and shape. ``step(gradients)`` takes a dict with (at least) the same names,
    each gradient of its parameter's shape and dtype.
    """

    def __init__(
        self,
        parameters: dict[str, np.ndarray],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        if not lr >= 0.0:
            raise ValueError(f"lr must be >= 0, got {lr}")
        if not eps >= 0.0:
            raise ValueError(f"eps must be >= 0, got {eps}")
        for index, beta in enumerate(betas):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"betas[{index}] must be in [0, 1), got {beta}")
        for name, value in parameters.items():
            if not (isinstance(value, np.ndarray) and np.issubdtype(value.dtype, np.floating)):
                raise ValueError(f"parameter {name!r} must be a floating NumPy array")
        self.parameters = parameters
        self.lr = float(lr)
        self.beta1, self.beta2 = (float(beta) for beta in betas)
        self.eps = float(eps)
        self.steps = 0
        self.exp_avg = {name: np.zeros_like(value) for name, value in parameters.items()}
        self.exp_avg_sq = {name: np.zeros_like(value) for name, value in parameters.items()}
        # Scratch space, so that a step allocates nothing.
        self._buffers = {
            name: (np.empty_like(value), np.empty_like(value)) for name, value in parameters.items()
        }

    def step(self, gradients: dict[str, np.ndarray]) -> None:
        """One Adam update of every parameter, in place, from ``gradients`` (by name); every
        gradient is checked before any parameter changes."""
        for name in self.parameters:
            if name not in gradients:
                raise ValueError(f"no gradient for parameter {name!r}")
            self._check(name, gradients[name])
        step = self.begin_step()
        for name in self.parameters:
            self._apply(name, gradients[name], step)

    def begin_step(self) -> tuple[float, float]:
        """Count a step; its constants for :meth:`update`: the step size and the square root of
        the second moment's bias correction. :meth:`step` is this, then every parameter's
        update; apart, the updates may come in any order, from any thread, one per parameter."""
        self.steps += 1
        step = float(self.steps)  # torch keeps the count as a tensor and reads it with .item()
        step_size = self.lr / (1 - self.beta1**step)
        return step_size, (1 - self.beta2**step) ** 0.5

    def update(self, name: str, grad: np.ndarray, step: tuple[float, float]) -> None:
        """Parameter ``name``'s update from its gradient, with :meth:`begin_step`'s constants."""
        self._check(name, grad)
        self._apply(name, grad, step)

    def _check(self, name: str, grad: np.ndarray) -> None:
        parameter = self.parameters[name]
        check_array(f"gradient {name!r}", grad, None, str(parameter.shape))
        if grad.shape != parameter.shape or grad.dtype != parameter.dtype:
            raise ValueError(
                f"gradient {name!r} is {grad.dtype} {grad.shape}, expected its parameter's "
                f"{parameter.dtype} {parameter.shape}"
            )

    def _apply(self, name: str, grad: np.ndarray, step: tuple[float, float]) -> None:
        parameter = self.parameters[name]
        arrays = (
            parameter,
            grad,
            self.exp_avg[name],
            self.exp_avg_sq[name],
            *self._buffers[name],
        )
        if not parameter.flags.c_contiguous:  # no flat view to write through: whole
            self._update(*arrays, *step)
            return
        # flat views (the moments and scratch are laid out as the parameter); the gradient,
        # only read, may be a flat copy
        flat = [array.reshape(-1) for array in arrays]
        piece = max(1, CHUNK_BYTES // parameter.itemsize)
        for start in range(0, parameter.size, piece):
            self._update(*(array[start : start + piece] for array in flat), *step)

    def _update(self, parameter, grad, exp_avg, exp_avg_sq, buffer, update, step_size, bc2_sqrt):
        """One piece of one parameter: torch's operations in torch's order, in place."""
        # exp_avg.lerp_(grad, 1 - beta1); weight < 0.5: self + weight * (end - self)
        np.subtract(grad, exp_avg, out=buffer)
        buffer *= 1 - self.beta1
        exp_avg += buffer
        # exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        exp_avg_sq *= self.beta2
        np.multiply(grad, 1 - self.beta2, out=buffer)
        buffer *= grad
        exp_avg_sq += buffer
        # denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
        np.sqrt(exp_avg_sq, out=buffer)
        buffer /= bc2_sqrt
        buffer += self.eps
        # param.addcdiv_(exp_avg, denom, value=-step_size): param + (-step_size * m) / denom
        np.multiply(exp_avg, -step_size, out=update)
        update /= buffer
        parameter += update
