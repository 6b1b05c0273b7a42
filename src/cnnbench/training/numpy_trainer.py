"""Training with the hand-written backward pass (NumPy), step for step beside PyTorch.

Both trainers start from the torch trainer's seeded initial weights
(``training.initial_weights``) and take the same mini-batches in the same order
(``training.epoch_orders``): mean cross-entropy,
Adam with torch's defaults. The NumPy side is the ``im2col`` network's ``loss_and_gradients`` and
``cnnbench.ops.Adam``; nothing of it uses torch.

    NumpyTrainer(initial, lr, dtype).step(x, labels) -> loss     one Adam step, in NumPy
    TorchTrainer(initial, lr, dtype).step(x, labels) -> loss     the same step, in PyTorch
    twin_steps(numpy_trainer, torch_trainer, batches)            both, compared after each step
    side_by_side(...)                                            both, with a row per step
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from cnnbench.common.numerics import max_norm_relative_error
from cnnbench.common.runtime import (
    blas_threads,
    progress,
    release_blas_threads,
    set_blas_threads,
)
from cnnbench.data import to_model_input
from cnnbench.network.architecture import Architecture
from cnnbench.network.torch_model import model_from_weights
from cnnbench.ops import Adam, Network, cross_entropy, cross_entropy_backward
from cnnbench.training.seeding import EVAL_BATCH, TrainSettings, epoch_orders, training_subset

STEP_COLUMNS = (
    "dtype",
    "step",
    "epoch",
    "loss_torch",
    "loss_numpy",
    "loss_relative_difference",
    "max_relative_parameter_difference",
)


# BLAS threads at which a step's backward pass runs on two Python threads (NumpyTrainer.step)
TWO_CALLERS = 2
# Steps the NumPy trainer takes before PyTorch takes the same ones (twin_steps). Each switch
# between the two refills the caches the other has filled and hands the cores from one library's
# threads to the other's: twin / sum of the two alone, with the comparisons, switching every step
# against every 16: 1.12-1.18 against 1.07-1.10 at 2 threads, 1.08-1.11 against 1.04-1.06 at 1
# (2-core Xeon, 3200 images, medians of 7, python -m cnnbench.bench.training --interleaved).
TWIN_BLOCK = 16
# at most this many bytes of NumPy parameters kept for the comparisons (a block fewer steps where
# a copy of a large network's parameters would outgrow it)
TWIN_KEPT_BYTES = 64 * 2**20


class NumpyTrainer:
    """The NumPy network (``variant``, ``dtype``) from ``initial`` weights, trained by Adam.

    Where BLAS has two threads (``set_threads(2)``), a step's backward pass runs on two: this
    one follows the chain of input gradients, a helper computes each layer's weight gradients
    and its Adam update as soon as the chain has used that layer's weights (``Network.backward``'s
    ``defer``), each calling BLAS on one thread. One caller leaves the other core idle through
    NumPy's one-thread work (col2im, ReLU, Adam: half the step); two fill both cores. The
    forward pass keeps both BLAS threads. The same operations on the same arrays: the same
    float32 bytes as one caller (OpenBLAS's sgemm gives them at any thread count). With more
    threads a step stays one caller with BLAS on all of them (two callers measured on 2 cores).
    """

    def __init__(
        self,
        initial: dict[str, np.ndarray],
        architecture: Architecture,
        lr: float,
        dtype: type[np.floating] | np.dtype,
        variant: str = "im2col",
    ) -> None:
        # A copy: the network's arrays are stepped in place.
        self.network = Network(
            {name: np.array(value) for name, value in initial.items()}, architecture, variant, dtype
        )
        self.optimizer = Adam(self.network.parameters, lr=lr)
        self._helper: ThreadPoolExecutor | None = None  # the second caller, at the first need

    def step(self, x: np.ndarray, labels: np.ndarray) -> float:
        """One Adam step on the batch (``x`` in the network's dtype); the batch's mean loss."""
        if blas_threads() == TWO_CALLERS:
            return self._step_on_two_callers(x, labels)
        loss, gradients = self.network.loss_and_gradients(x, labels, input_gradient=False)
        self.optimizer.step(gradients)
        return float(loss)

    def _step_on_two_callers(self, x: np.ndarray, labels: np.ndarray) -> float:
        logits, cache = self.network.forward(x)
        loss = cross_entropy(logits, labels)
        dlogits = cross_entropy_backward(logits, labels)
        # one BLAS thread per caller; then end the idle worker, which would spin on the core
        # the helper needs (in this order: setting the count starts the workers again)
        set_blas_threads(1)
        release_blas_threads()
        if self._helper is None:
            self._helper = ThreadPoolExecutor(1, thread_name_prefix="numpy-trainer")
        helper, step = self._helper, self.optimizer.begin_step()
        tasks: list[Future] = []  # on the helper, in order: a layer's gradients, its update, ...
        layers: list[tuple[Callable, Future]] = []  # (compute, its task): the layers so far

        def defer(compute: Callable[[], dict[str, np.ndarray]]) -> None:
            if layers:  # the chain has left the layer before: its weights may change now
                tasks.append(helper.submit(self._update_from, layers[-1][1], step))
            layers.append((compute, helper.submit(compute)))
            tasks.append(layers[-1][1])

        try:
            self.network.backward(cache, dlogits, input_gradient=False, defer=defer)
            if layers:
                compute, task = layers[-1]
                if task.cancel():  # the helper is behind: this thread takes the last layer
                    tasks.remove(task)
                    self._update(compute(), step)
                else:
                    tasks.append(helper.submit(self._update_from, task, step))
        finally:
            wait(tasks)  # nothing of this step changes a parameter after it returns
            set_blas_threads(TWO_CALLERS)
        for task in tasks:
            task.result()  # raises what a helper task raised
        return float(loss)

    def _update(self, gradients: dict[str, np.ndarray], step: tuple[float, float]) -> None:
        for name, gradient in gradients.items():
            self.optimizer.update(name, gradient, step)

    def _update_from(self, gradients: Future, step: tuple[float, float]) -> None:
        self._update(gradients.result(), step)

    def parameters(self) -> dict[str, np.ndarray]:
        return self.network.parameters


class TorchTrainer:
    """The torch network (in ``dtype``) from ``initial`` weights, trained by ``torch.optim.Adam``.

    Each step first ends OpenBLAS's idle worker threads (``release_blas_threads``): after NumPy
    steps they would spin through this one, on the cores torch's threads run on.
    ``release_blas=False`` leaves them spinning, only to measure what that costs
    (``python -m cnnbench.bench.training --interleaved``).
    """

    def __init__(
        self,
        initial: dict[str, np.ndarray],
        architecture: Architecture,
        lr: float,
        dtype: type[np.floating] | np.dtype,
        release_blas: bool = True,
    ) -> None:
        torch_dtype = torch.from_numpy(np.zeros(0, dtype=dtype)).dtype
        self.model = model_from_weights(initial, architecture, torch_dtype).train()
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=lr)
        self.criterion = nn.CrossEntropyLoss()
        self.release_blas = release_blas

    def step(self, x: np.ndarray, labels: np.ndarray) -> float:
        if self.release_blas:
            release_blas_threads()
        self.optimizer.zero_grad()
        # Copied with torch's own strides, as the torch trainer's batches are: NumPy strides the
        # channel axis (of size 1) differently, and oneDNN then picks kernels that round
        # differently. So this run is the torch trainer's, bit for bit (tests/test_train_numpy.py).
        inputs = torch.from_numpy(x).clone(memory_format=torch.contiguous_format)
        loss = self.criterion(self.model(inputs), torch.from_numpy(labels))
        loss.backward()
        self.optimizer.step()
        return loss.item()

    def parameters(self) -> dict[str, np.ndarray]:
        return {name: p.detach().numpy() for name, p in self.model.named_parameters()}


def max_relative_difference(
    actual: dict[str, np.ndarray], expected: dict[str, np.ndarray]
) -> float:
    """The largest max-norm relative difference of any parameter tensor."""
    return max(max_norm_relative_error(actual[name], expected[name]) for name in expected)


def batches(
    n_images: int, epochs: int, batch_size: int, seed: int
) -> Iterator[tuple[int, np.ndarray]]:
    """(epoch, image indices) of every mini-batch, in training order, as the torch trainer."""
    for epoch, order in enumerate(epoch_orders(n_images, epochs, seed), start=1):
        for start in range(0, n_images, batch_size):
            yield epoch, order[start : start + batch_size]


@dataclass
class Prepared:
    """A run's training inputs in one dtype: images (N, 1, H, W) and int64 labels."""

    x: np.ndarray
    labels: np.ndarray


def prepare(images: np.ndarray, labels: np.ndarray, dtype) -> Prepared:
    return Prepared(to_model_input(images).astype(dtype, copy=False), labels.astype(np.int64))


def evaluate_numpy(network: Network, data: Prepared) -> tuple[float, float]:
    """Mean cross-entropy and accuracy over a whole split, as the torch trainer's ``evaluate``."""
    loss_sum, correct = 0.0, 0
    for start in range(0, len(data.x), EVAL_BATCH):
        logits = network.logits(data.x[start : start + EVAL_BATCH])
        target = data.labels[start : start + EVAL_BATCH]
        loss_sum += float(cross_entropy(logits, target)) * len(target)
        correct += int((logits.argmax(1) == target).sum())
    return loss_sum / len(data.x), correct / len(data.x)


@dataclass
class TwinStep:
    """One step of the twin run: the batch's images, NumPy's loss and its step's seconds; with
    PyTorch beside it, PyTorch's loss and the largest max-norm relative difference of any
    parameter after the same step (else None)."""

    images: int
    loss_numpy: float
    seconds: float
    loss_torch: float | None = None
    parameter_difference: float | None = None


def twin_steps(
    numpy_trainer: NumpyTrainer,
    torch_trainer: TorchTrainer | None,
    batches: Iterable[tuple[np.ndarray, np.ndarray]],
    block: int | None = None,
) -> Iterator[TwinStep]:
    """Both trainers through ``batches`` ((x, labels) pairs), ``block`` at a time: NumPy's steps,
    a copy of its parameters after each, then PyTorch's steps on the same batches, each compared
    with the copy from the same step. The same numbers as stepping them in turn (they share
    nothing); fewer switches between the libraries. ``block`` None: ``TWIN_BLOCK``, fewer where
    the copies would outgrow ``TWIN_KEPT_BYTES``. Without ``torch_trainer``, NumPy's steps alone.
    One ``TwinStep`` per batch, in order."""
    if block is None:
        copy_bytes = sum(value.nbytes for value in numpy_trainer.parameters().values())
        block = max(1, min(TWIN_BLOCK, TWIN_KEPT_BYTES // copy_bytes))
    remaining = iter(batches)
    while current := list(itertools.islice(remaining, block)):
        numpy_steps = []
        for x, labels in current:
            started = time.perf_counter()
            loss = numpy_trainer.step(x, labels)
            step = TwinStep(len(labels), loss, time.perf_counter() - started)
            kept = None
            if torch_trainer is not None:
                kept = {name: value.copy() for name, value in numpy_trainer.parameters().items()}
            numpy_steps.append((step, kept))
        for (x, labels), (step, kept) in zip(current, numpy_steps, strict=True):
            if torch_trainer is not None:
                step.loss_torch = torch_trainer.step(x, labels)
                step.parameter_difference = max_relative_difference(
                    kept, torch_trainer.parameters()
                )
            yield step


def side_by_side(
    settings: TrainSettings,
    train_split: tuple[np.ndarray, np.ndarray],
    initial: dict[str, np.ndarray],
    architecture: Architecture,
    dtype,
    steps: int | None = None,
    variant: str = "im2col",
) -> list[dict]:
    """Train NumPy and PyTorch in ``dtype`` from ``initial`` on the same batches (``twin_steps``).

    ``steps``: stop after this many (None: the whole configured run). One row per step
    (``STEP_COLUMNS``): both losses, their relative difference, and the largest max-norm
    relative difference of any parameter after the step.
    """
    images, labels = training_subset(settings, train_split)
    data = prepare(images, labels, dtype)
    numpy_trainer = NumpyTrainer(initial, architecture, settings.lr, dtype, variant)
    torch_trainer = TorchTrainer(initial, architecture, settings.lr, dtype)
    all_batches = batches(len(data.x), settings.epochs, settings.batch_size, settings.seed)
    total = settings.epochs * -(-len(data.x) // settings.batch_size)
    chosen = list(itertools.islice(all_batches, total if steps is None else min(steps, total)))
    pairs = ((data.x[batch], data.labels[batch]) for _, batch in chosen)
    bar = progress(
        zip(chosen, twin_steps(numpy_trainer, torch_trainer, pairs), strict=True),
        total=len(chosen),
        desc=f"side by side, {np.dtype(dtype).name}",
        unit="step",
    )
    return [
        step_row(dtype, step, epoch, twin) for step, ((epoch, _), twin) in enumerate(bar, start=1)
    ]


def step_row(dtype, step: int, epoch: int, twin: TwinStep) -> dict:
    return {
        "dtype": np.dtype(dtype).name,
        "step": step,
        "epoch": epoch,
        "loss_torch": twin.loss_torch,
        "loss_numpy": twin.loss_numpy,
        "loss_relative_difference": abs(twin.loss_numpy - twin.loss_torch) / abs(twin.loss_torch),
        "max_relative_parameter_difference": twin.parameter_difference,
    }


@dataclass
class NumpyRun:
    """A whole NumPy training run: its final weights (float32, the npz format's dict), one
    metrics row per epoch (``training.METRIC_COLUMNS``), and, when PyTorch trained beside it, one
    row per step (``STEP_COLUMNS``) and the PyTorch side's final weights (float32)."""

    weights: dict[str, np.ndarray]
    history: list[dict]
    steps: list[dict]
    torch_weights: dict[str, np.ndarray] | None


def train_numpy(
    settings: TrainSettings,
    train_split: tuple[np.ndarray, np.ndarray],
    test_split: tuple[np.ndarray, np.ndarray],
    initial: dict[str, np.ndarray],
    architecture: Architecture,
    dtype,
    alongside_torch: bool = True,
) -> NumpyRun:
    """The whole configured training in NumPy (``dtype``), from ``initial``.

    Metrics' ``seconds``: the NumPy epoch's own time (its steps and its evaluation). With
    ``alongside_torch``, PyTorch trains beside it in the same dtype on the same batches
    (untimed): in float32 and at the torch trainer's thread count, that is the torch trainer's
    own run, bit for bit.
    """
    images, labels = training_subset(settings, train_split)
    data = prepare(images, labels, dtype)
    test = prepare(*test_split, dtype)
    numpy_trainer = NumpyTrainer(initial, architecture, settings.lr, dtype)
    torch_trainer = (
        TorchTrainer(initial, architecture, settings.lr, dtype) if alongside_torch else None
    )
    history, rows = [], []
    n_batches = -(-len(data.x) // settings.batch_size)
    all_batches = batches(len(data.x), settings.epochs, settings.batch_size, settings.seed)
    step = 0
    for epoch in range(1, settings.epochs + 1):
        seconds, loss_sum = 0.0, 0.0
        epoch_batches = list(itertools.islice(all_batches, n_batches))
        assert all(batch_epoch == epoch for batch_epoch, _ in epoch_batches)
        pairs = ((data.x[batch], data.labels[batch]) for _, batch in epoch_batches)
        bar = progress(
            twin_steps(numpy_trainer, torch_trainer, pairs),
            total=n_batches,
            desc=f"epoch {epoch}/{settings.epochs}",
            unit="batch",
        )
        for twin in bar:
            step += 1
            seconds += twin.seconds
            loss_sum += twin.loss_numpy * twin.images
            if torch_trainer is not None:
                rows.append(step_row(dtype, step, epoch, twin))
            bar.set_postfix(loss=f"{twin.loss_numpy:.4f}", refresh=False)
        started = time.perf_counter()
        test_loss, test_accuracy = evaluate_numpy(numpy_trainer.network, test)
        seconds += time.perf_counter() - started
        history.append(
            {
                "epoch": epoch,
                "train_loss": loss_sum / len(data.x),
                "test_loss": test_loss,
                "test_accuracy": test_accuracy,
                "seconds": seconds,
            }
        )
    return NumpyRun(
        as_float32(numpy_trainer.parameters()),
        history,
        rows,
        None if torch_trainer is None else as_float32(torch_trainer.parameters()),
    )


def as_float32(parameters: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {name: np.array(value, dtype=np.float32) for name, value in parameters.items()}
