"""Check the NumPy network's loss gradients against PyTorch autograd and finite differences.

Job: input weights, manifest (the weights must have its sha256), test_images, test_labels; output
csv; settings: the config's ``gradcheck`` section (batch_size, samples, seed). Runs on 1 thread.

For the mean cross-entropy of the first ``batch_size`` test images, the gradient of every
parameter tensor and of the input is computed by both NumPy implementations (``loops``,
``im2col``) and compared with three references:

- ``torch_float64``: torch autograd in float64 (NumPy float64); tolerance 1e-10;
- ``torch_float32``: torch autograd in float32 (NumPy float32); tolerance 1e-4, or three times
  torch float32's own error against torch float64 where that is larger: for confidently
  classified images dLoss/dlogits = softmax - onehot is a near-cancellation (1 - p ~ 1e-6), so
  any float32 gradient is only good to ~1e-4..1e-3 of the tensor's scale; the row then says the
  NumPy float32 gradient is as close to torch's as float32 rounding allows;
- ``finite_differences``: central differences of the float64 loss (im2col network: the loss is
  the same function whichever implementation computes it, and the loop network is too slow for
  two forward passes per coordinate) at ``samples`` seeded random coordinates per tensor,
  compared with each implementation's float64 gradient there; step 1e-5, tolerance 1e-6.

Errors are relative to the tensor's scale, the largest magnitude of its float64 torch gradient:
max_rel_err = max|actual - reference| / scale, so a coordinate whose gradient is near zero is
not judged by its own (meaningless) relative error.

Kinks: a central difference is only a derivative if loss(theta +- step) stay on the same smooth
piece.  A sampled coordinate whose perturbation flips any ReLU (the sign pattern of any
pre-activation changes) or moves any max pooling's winner (``Network.kinks``) is replaced by the
next random coordinate, and the number replaced is reported; none is silently accepted.  Where
a tensor has too few coordinates left (a small layer's biases), its replaced coordinates are
tried again with smaller steps (SMALLER_STEPS), which stay on one piece nearer a kink.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import numpy as np
import torch

from cnnbench.common.errors import UserError
from cnnbench.common.files import write_rows
from cnnbench.common.job import Job, run_job
from cnnbench.common.numerics import max_abs_error, max_norm_relative_error, perturbed
from cnnbench.common.runtime import progress, set_threads
from cnnbench.data import load_split, to_model_input
from cnnbench.network.architecture import Architecture
from cnnbench.network.torch_model import model_from_weights
from cnnbench.network.weights import load_verified
from cnnbench.ops import INPUT_GRADIENT, VARIANTS, Network, cross_entropy

COLUMNS = (
    "tensor",
    "implementation",
    "reference",
    "dtype",
    "max_abs_err",
    "max_rel_err",
    "tolerance",
    "passed",
)
FLOAT32_ROUNDING_FACTOR = 3
# reference -> (dtype of the compared NumPy gradient, tolerance on max_rel_err; for float32 the
# floor of a tolerance that also scales with float32's own rounding error, see the docstring)
REFERENCES = {
    "torch_float64": (np.float64, 1e-10),
    "torch_float32": (np.float32, 1e-4),
    "finite_differences": (np.float64, 1e-6),
}
FD_STEP = 1e-5
# a small tensor's coordinates refused at FD_STEP are tried again with these: a kink closer than
# 1e-5 may be further than 1e-7, and the rounding error (~1e-16 * loss / step) stays below 1e-8
SMALLER_STEPS = (1e-6, 1e-7)


# ---------------------------------------------------------------------------- gradients


def tensors(architecture: Architecture) -> tuple[str, ...]:
    """The gradients checked: every parameter's, then the input's."""
    return (*architecture.parameter_shapes, INPUT_GRADIENT)


def torch_gradients(
    arrays: dict[str, np.ndarray],
    architecture: Architecture,
    x: np.ndarray,
    labels: np.ndarray,
    dtype: torch.dtype,
) -> dict[str, np.ndarray]:
    """Autograd gradients of the mean cross-entropy: every parameter by name, and ``"input"``."""
    model = model_from_weights(arrays, architecture, dtype)
    inputs = torch.tensor(x, dtype=dtype, requires_grad=True)
    loss = torch.nn.functional.cross_entropy(
        model(inputs), torch.from_numpy(labels.astype(np.int64))
    )
    loss.backward()
    grads = {name: parameter.grad.numpy() for name, parameter in model.named_parameters()}
    grads[INPUT_GRADIENT] = inputs.grad.numpy()
    return {name: grads[name] for name in tensors(architecture)}


def finite_difference_samples(
    network: Network,
    x: np.ndarray,
    labels: np.ndarray,
    samples: int,
    rng: np.random.Generator,
    on_sample: Callable[[], None],
) -> tuple[dict[str, tuple[tuple[np.ndarray, ...], np.ndarray]], dict[str, int]]:
    """Central differences of the loss at ``samples`` random coordinates per tensor.

    Perturbs ``x`` and ``network.parameters`` in place (restoring them).  Returns, per tensor,
    the coordinates (an index tuple of arrays) with their derivatives, and how many drawn
    coordinates were replaced because +-FD_STEP crossed a kink (``Network.kinks`` changed).
    A tensor with too few coordinates left (a small layer's biases) has its replaced ones
    checked again with the SMALLER_STEPS.
    """

    def loss_and_pattern() -> tuple[float, list[np.ndarray]]:
        logits, cache = network.forward(x)
        return float(cross_entropy(logits, labels)), network.kinks(cache)

    _, base_pattern = loss_and_pattern()

    def derivative(array: np.ndarray, index: tuple, step: float) -> float | None:
        """The central difference at ``index``, or None if +-step leaves the piece."""
        (above, above_pattern), (below, below_pattern) = perturbed(
            loss_and_pattern, array, index, step
        )
        if all(
            np.array_equal(base, up) and np.array_equal(base, down)
            for base, up, down in zip(base_pattern, above_pattern, below_pattern, strict=True)
        ):
            return (above - below) / (2 * step)
        return None

    estimates, replaced = {}, {}
    for name in tensors(network.architecture):
        array = x if name == INPUT_GRADIENT else network.parameters[name]
        wanted = min(samples, array.size)
        coordinates, derivatives, refused = [], [], []
        for flat in rng.permutation(array.size):
            if len(coordinates) == wanted:
                break
            index = np.unravel_index(flat, array.shape)
            value = derivative(array, index, FD_STEP)
            if value is None:
                refused.append(index)
                continue
            coordinates.append(index)
            derivatives.append(value)
            on_sample()
        replaced[name] = len(refused)
        for index in refused:
            if len(coordinates) == wanted:
                break
            for step in SMALLER_STEPS:
                value = derivative(array, index, step)
                if value is not None:
                    coordinates.append(index)
                    derivatives.append(value)
                    on_sample()
                    break
        if len(coordinates) < wanted:
            raise RuntimeError(
                f"{name}: only {len(coordinates)} of its {array.size} coordinates keep every ReLU "
                f"and max pooling on one piece within +-{FD_STEP} (or {SMALLER_STEPS}); "
                f"{wanted} were asked for"
            )
        index_arrays = tuple(np.array(axis) for axis in zip(*coordinates, strict=True))
        estimates[name] = (index_arrays, np.array(derivatives))
    return estimates, replaced


# ---------------------------------------------------------------------------- the check


def check_gradients(
    arrays: dict[str, np.ndarray],
    architecture: Architecture,
    images: np.ndarray,
    labels: np.ndarray,
    samples: int,
    seed: int,
) -> tuple[list[dict], dict[str, int]]:
    """One row per (tensor, implementation, reference); and the FD replacements per tensor."""
    x32 = to_model_input(images)
    x64 = x32.astype(np.float64)
    shapes = architecture.parameter_shapes
    fd_coordinates = sum(
        min(samples, np.prod(shapes.get(name, x64.shape))) for name in tensors(architecture)
    )
    with progress(None, total=2 * len(VARIANTS) + 2 + fd_coordinates, desc="gradcheck") as bar:
        numpy_grads = {}
        for implementation in VARIANTS:
            for dtype, x in ((np.float64, x64), (np.float32, x32)):
                network = Network(arrays, architecture, implementation, dtype)
                numpy_grads[implementation, dtype] = network.loss_and_gradients(x, labels)[1]
                bar.update()
        torch_grads = {}
        for reference, torch_dtype, x in (
            ("torch_float64", torch.float64, x64),
            ("torch_float32", torch.float32, x32),
        ):
            torch_grads[reference] = torch_gradients(arrays, architecture, x, labels, torch_dtype)
            bar.update()
        estimates, replaced = finite_difference_samples(
            Network(arrays, architecture, "im2col", np.float64),
            x64.copy(),
            labels,
            samples,
            np.random.default_rng(seed),
            bar.update,
        )
    rows = []
    for name in tensors(architecture):
        scale = float(np.max(np.abs(torch_grads["torch_float64"][name])))
        float32_rounding = max_norm_relative_error(
            torch_grads["torch_float32"][name], torch_grads["torch_float64"][name]
        )
        for implementation in VARIANTS:
            for reference, (dtype, tolerance) in REFERENCES.items():
                if reference == "torch_float32":
                    # two float32 results, each within e of the truth, differ by up to 2e; allow
                    # NumPy's error to be as large as torch's, plus a margin
                    tolerance = max(tolerance, FLOAT32_ROUNDING_FACTOR * float32_rounding)
                actual = numpy_grads[implementation, dtype][name]
                if reference == "finite_differences":
                    coordinates, expected = estimates[name]
                    actual = actual[coordinates]
                else:
                    expected = torch_grads[reference][name]
                max_abs_err = max_abs_error(actual, expected)
                max_rel_err = max_abs_err / scale if scale > 0 else max_abs_err
                rows.append(
                    {
                        "tensor": name,
                        "implementation": implementation,
                        "reference": reference,
                        "dtype": np.dtype(dtype).name,
                        "max_abs_err": max_abs_err,
                        "max_rel_err": max_rel_err,
                        "tolerance": tolerance,
                        "passed": max_rel_err <= tolerance,
                    }
                )
    return rows, replaced


def run(job: Job) -> None:
    settings = job.settings
    batch_size, samples = settings["batch_size"], settings["samples"]
    set_threads(1)
    arrays, architecture = load_verified(
        job.path("input", "weights"), job.path("input", "manifest")
    )
    images, labels = load_split(
        job.path("input", "test_images"), job.path("input", "test_labels"), architecture
    )
    if batch_size > len(images):
        raise UserError(f"gradcheck.batch_size {batch_size} exceeds the {len(images)} test images")
    rows, replaced = check_gradients(
        arrays, architecture, images[:batch_size], labels[:batch_size], samples, settings["seed"]
    )
    write_rows(rows, COLUMNS, job.path("output", "csv"))

    failed = [row for row in rows if not row["passed"]]
    print(
        f"gradcheck: {len(rows) - len(failed)}/{len(rows)} rows passed "
        f"({batch_size} images, {len(tensors(architecture))} tensors, {len(VARIANTS)} implementations, "
        f"{len(REFERENCES)} references); finite differences: step {FD_STEP}, "
        f"{samples} coordinates per tensor, {sum(replaced.values())} replaced because they "
        f"crossed a kink, a ReLU's or a max pooling's "
        f"({', '.join(f'{n} {k}' for n, k in replaced.items() if k) or 'none'}; a tensor left "
        f"with too few coordinates checks them at a smaller step instead)",
        file=sys.stderr,
    )
    for reference in REFERENCES:
        worst = max(
            (row for row in rows if row["reference"] == reference),
            key=lambda r: r["max_rel_err"] / r["tolerance"],
        )
        print(
            f"  {reference}: worst max_rel_err {worst['max_rel_err']:.2e} "
            f"({worst['tensor']}, {worst['implementation']}), tolerance {worst['tolerance']:.2g}",
            file=sys.stderr,
        )
    if failed:
        listed = "\n  ".join(
            f"{row['tensor']} / {row['implementation']} / {row['reference']}: max_rel_err "
            f"{row['max_rel_err']:.3e} > tolerance {row['tolerance']:g}"
            for row in failed
        )
        raise SystemExit(f"gradcheck: {len(failed)} rows failed:\n  {listed}")


if __name__ == "__main__":
    run_job(run)
