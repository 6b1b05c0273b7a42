"""What the two trainers share: the settings, the seeded start, the order of the mini-batches.

The PyTorch trainer (``cnnbench.steps.train``) and the NumPy one (``cnnbench.training.numpy_trainer``) start
from the same seeded initial weights (:func:`initial_weights`, saved by the train step as
``results/model/init.npz``) and visit the same mini-batches in the same order: consecutive
``batch_size`` slices of one seeded permutation per epoch (:func:`epoch_orders`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from cnnbench.common.errors import UserError
from cnnbench.network.architecture import Architecture
from cnnbench.network.torch_model import Net

METRIC_COLUMNS = ("epoch", "train_loss", "test_loss", "test_accuracy", "seconds")
EVAL_BATCH = 1000  # test images per forward pass when evaluating


@dataclass(frozen=True)
class TrainSettings:
    epochs: int
    batch_size: int
    lr: float
    seed: int
    device: str
    limit: int | None


def seeded_model(seed: int, architecture: Architecture) -> Net:
    """The network with its seeded initial weights, torch set to train it reproducibly: the
    start of both trainers' runs."""
    torch.manual_seed(seed)
    # On CUDA, deterministic algorithms need cuBLAS's fixed workspace, set before its first use
    # (torch checks it once and may refuse a matrix multiply without it); nothing on the CPU.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    # float32 convolutions in float32 on CUDA too: cuDNN's default is TF32 (10-bit mantissa).
    torch.backends.cudnn.conv.fp32_precision = "ieee"
    return Net(architecture)


def initial_weights(seed: int, architecture: Architecture) -> dict[str, np.ndarray]:
    """:func:`seeded_model`'s parameters as float32 arrays by name (the npz format's dict)."""
    return {
        name: tensor.detach().numpy().copy()
        for name, tensor in seeded_model(seed, architecture).state_dict().items()
    }


def epoch_orders(n_images: int, epochs: int, seed: int) -> Iterator[np.ndarray]:
    """The order the training images are visited in: one seeded permutation per epoch.

    A generator of its own, so drawing the orders consumes nothing of torch's global random
    state (the initialisation's); the torch trainer has always drawn exactly these.
    """
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        yield torch.randperm(n_images, generator=generator).numpy()


def training_subset(
    settings: TrainSettings, train_split: tuple[np.ndarray, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """The training images and labels a run uses: the first ``settings.limit`` (None: all)."""
    images, labels = train_split
    if settings.limit is None:
        return images, labels
    if settings.limit > len(images):
        raise UserError(f"train.limit {settings.limit} exceeds the {len(images)} training images")
    return images[: settings.limit], labels[: settings.limit]
