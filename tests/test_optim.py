"""cnnbench.ops.Adam against torch.optim.Adam, fed the same gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cnnbench.ops import Adam, optim

SHAPES = {"w": (64, 32, 3, 3), "b": (7,), "fc": (250, 48)}


def run_both(dtype, steps: int, lr: float = 1e-3, **options):
    """Both optimisers from the same start on the same random gradients (of varied scales)."""
    rng = np.random.default_rng(0)
    start = {name: rng.standard_normal(shape).astype(dtype) for name, shape in SHAPES.items()}
    tensors = [torch.tensor(value, requires_grad=True) for value in start.values()]
    reference = torch.optim.Adam(tensors, lr=lr, **options)
    torch_options = {"betas": options.get("betas", (0.9, 0.999)), "eps": options.get("eps", 1e-8)}
    ours = Adam({name: value.copy() for name, value in start.items()}, lr=lr, **torch_options)
    for _ in range(steps):
        gradients = {
            name: (rng.standard_normal(shape) * 10 ** rng.uniform(-6, 1)).astype(dtype)
            for name, shape in SHAPES.items()
        }
        for tensor, gradient in zip(tensors, gradients.values(), strict=True):
            tensor.grad = torch.from_numpy(gradient.copy())
        reference.step()
        ours.step(gradients)
    return start, ours, dict(zip(SHAPES, tensors, strict=True)), reference


@pytest.mark.parametrize(
    ("dtype", "tolerance"), [(np.float64, 4 * 2.0**-52), (np.float32, 4 * 2.0**-23)]
)
def test_adam_matches_torch_to_rounding(dtype, tolerance):
    torch.set_num_threads(1)
    start, ours, tensors, reference = run_both(dtype, steps=30)
    for name, tensor in tensors.items():
        expected = tensor.detach().numpy()
        assert ours.parameters[name].dtype == dtype
        # The parameters moved (30 steps of about lr each) ...
        assert np.abs(ours.parameters[name] - start[name]).max() > 1e-3
        # ... exactly as torch's did, up to a few roundings (torch fuses lerp/addcmul into FMAs
        # and its vectorised sqrt is not always correctly rounded).
        state = reference.state[tensor]
        for actual, wanted in (
            (ours.parameters[name], expected),
            (ours.exp_avg[name], state["exp_avg"].numpy()),
            (ours.exp_avg_sq[name], state["exp_avg_sq"].numpy()),
        ):
            error = np.abs(actual - wanted).max() / np.abs(wanted).max()
            assert error <= tolerance, (name, error)
    assert ours.steps == 30


def test_adam_other_hyperparameters_match_torch():
    torch.set_num_threads(1)
    _, ours, tensors, _ = run_both(np.float64, steps=5, lr=0.05, betas=(0.5, 0.9), eps=1e-3)
    for name, tensor in tensors.items():
        expected = tensor.detach().numpy()
        assert np.abs(ours.parameters[name] - expected).max() <= 1e-15 * np.abs(expected).max()
        assert np.abs(ours.parameters[name] - expected).max() > 0 or name == "b"


def test_adam_first_step_is_sign_times_lr():
    # Step 1: m = 0.1 g, v = 0.001 g^2, bias-corrected to g and g^2: p -= lr * g / (|g| + eps).
    parameters = {"p": np.array([1.0, -2.0, 3.0])}
    gradient = np.array([0.5, -4.0, 0.0])
    Adam(parameters, lr=0.1).step({"p": gradient})
    expected = [1.0 - 0.1 * 0.5 / (0.5 + 1e-8), -2.0 + 0.1 * 4.0 / (4.0 + 1e-8), 3.0]
    np.testing.assert_allclose(parameters["p"], expected, rtol=1e-15)


def test_adam_rejects_missing_or_mismatched_gradients():
    adam = Adam({"p": np.zeros(3)})
    with pytest.raises(ValueError, match="no gradient for parameter 'p'"):
        adam.step({})
    with pytest.raises(ValueError, match=r"gradient 'p' is float32 \(3,\), expected .*float64"):
        adam.step({"p": np.zeros(3, dtype=np.float32)})
    with pytest.raises(ValueError, match=r"betas\[1\] must be in \[0, 1\)"):
        Adam({"p": np.zeros(3)}, betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="parameter 'p' must be a floating NumPy array"):
        Adam({"p": np.zeros(3, dtype=np.int64)})
    assert adam.steps == 0


def test_adam_in_pieces_gives_the_bytes_of_adam_on_whole_arrays(monkeypatch):
    """Parameters larger than one piece (``CHUNK_BYTES``), and one not C-contiguous, are updated
    exactly as whole arrays are: the same bytes after several steps."""
    rng = np.random.default_rng(1)
    start = {
        "big": rng.standard_normal((37, 101)).astype(np.float32),  # 3 pieces and a partial one
        "small": rng.standard_normal(5).astype(np.float32),
        "transposed": rng.standard_normal((29, 31)).astype(np.float32).T,  # F-contiguous
    }
    steps = [
        {name: rng.standard_normal(value.shape).astype(np.float32) for name, value in start.items()}
        for _ in range(4)
    ]

    def final(chunk_bytes):
        monkeypatch.setattr(optim, "CHUNK_BYTES", chunk_bytes)
        parameters = {name: value.copy(order="K") for name, value in start.items()}
        adam = Adam(parameters, lr=1e-2)
        for gradients in steps:
            adam.step(gradients)
        return parameters, adam

    pieces, adam = final(4 * 1000)
    whole, _ = final(2**40)
    assert len(range(0, start["big"].size, 1000)) == 4
    for name in start:
        assert pieces[name].tobytes() == whole[name].tobytes(), name
        assert not np.array_equal(pieces[name], start[name]), name  # it did move
    assert adam.exp_avg["big"].tobytes() != np.zeros_like(start["big"]).tobytes()
