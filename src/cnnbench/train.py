"""Reference training in PyTorch: Adam + cross-entropy, deterministic on CPU.

    python -m cnnbench.train --train-images P --train-labels P --test-images P --test-labels P \
        --epochs 5 --batch-size 128 --lr 0.001 --seed 0 --device auto --limit none --threads 2 \
        --checkpoint results/model/checkpoint.pt --metrics results/training/metrics.csv \
        --init results/model/init.npz
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from cnnbench.data import load_split, to_model_input
from cnnbench.model import SimpleCNN, pick_device
from cnnbench.runtime import atomic_output, optional_int, progress, set_threads
from cnnbench.weights import save_weights

METRIC_COLUMNS = ("epoch", "train_loss", "test_loss", "test_accuracy", "seconds")
EVAL_BATCH = 1000


@dataclass(frozen=True)
class TrainSettings:
    epochs: int
    batch_size: int
    lr: float
    seed: int
    device: str = "auto"
    limit: int | None = None


def seeded_model(seed: int) -> SimpleCNN:
    """The network with its seeded initial weights: the start of every training run (both
    trainers: the NumPy one starts from these weights, saved by ``--init``)."""
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    return SimpleCNN()


def initial_weights(seed: int) -> dict[str, np.ndarray]:
    """:func:`seeded_model`'s parameters as float32 arrays by name (the npz format's dict)."""
    return {
        name: tensor.detach().numpy().copy()
        for name, tensor in seeded_model(seed).state_dict().items()
    }


def epoch_orders(n_images: int, epochs: int, seed: int) -> Iterator[np.ndarray]:
    """The order the training images are visited in, one seeded permutation per epoch.

    Both trainers (PyTorch's and NumPy's) take their mini-batches from these: consecutive
    ``batch_size`` slices of each epoch's order. A generator of its own, so drawing the orders
    consumes nothing of torch's global random state (the initialisation's).
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
        raise ValueError(f"train.limit {settings.limit} exceeds the {len(images)} training images")
    return images[: settings.limit], labels[: settings.limit]


@torch.inference_mode()
def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """Mean cross-entropy and accuracy over a whole split."""
    model.eval()
    loss_sum, correct = 0.0, 0
    for start in range(0, len(images), EVAL_BATCH):
        logits = model(images[start : start + EVAL_BATCH])
        target = labels[start : start + EVAL_BATCH]
        loss_sum += nn.functional.cross_entropy(logits, target, reduction="sum").item()
        correct += (logits.argmax(1) == target).sum().item()
    return loss_sum / len(images), correct / len(images)


def train(
    settings: TrainSettings,
    train_split: tuple[np.ndarray, np.ndarray],
    test_split: tuple[np.ndarray, np.ndarray],
) -> tuple[SimpleCNN, list[dict]]:
    """Train the reference model; return it (on CPU) and one metrics row per epoch."""
    device = pick_device(settings.device)
    train_images, train_labels = training_subset(settings, train_split)
    x_train = torch.from_numpy(to_model_input(train_images)).to(device)
    y_train = torch.from_numpy(train_labels.astype(np.int64)).to(device)
    x_test = torch.from_numpy(to_model_input(test_split[0])).to(device)
    y_test = torch.from_numpy(test_split[1].astype(np.int64)).to(device)

    model = seeded_model(settings.seed).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
    criterion = nn.CrossEntropyLoss()
    history = []
    orders = epoch_orders(len(x_train), settings.epochs, settings.seed)
    for epoch, epoch_order in enumerate(orders, start=1):
        started = time.perf_counter()
        model.train()
        order = torch.from_numpy(epoch_order).to(device)
        batches = range(0, len(order), settings.batch_size)
        loss_sum = 0.0
        bar = progress(batches, desc=f"epoch {epoch}/{settings.epochs}", unit="batch")
        for start in bar:
            batch = order[start : start + settings.batch_size]
            optimizer.zero_grad()
            loss = criterion(model(x_train[batch]), y_train[batch])
            loss.backward()
            optimizer.step()
            loss_sum += loss.item() * len(batch)
            bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
        test_loss, test_accuracy = evaluate(model, x_test, y_test)
        row = {
            "epoch": epoch,
            "train_loss": loss_sum / len(x_train),
            "test_loss": test_loss,
            "test_accuracy": test_accuracy,
            "seconds": time.perf_counter() - started,
        }
        history.append(row)
        print(
            f"epoch {epoch}: train loss {row['train_loss']:.4f}, test loss {test_loss:.4f}, "
            f"test accuracy {test_accuracy:.2%}, {row['seconds']:.1f} s",
            file=sys.stderr,
        )
    return model.cpu(), history


def write_metrics(path, history: list[dict]) -> None:
    with atomic_output(path) as temporary, open(temporary, "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=METRIC_COLUMNS)
        writer.writeheader()
        writer.writerows(history)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m cnnbench.train", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--train-images", required=True)
    parser.add_argument("--train-labels", required=True)
    parser.add_argument("--test-images", required=True)
    parser.add_argument("--test-labels", required=True)
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--batch-size", type=int, required=True)
    parser.add_argument("--lr", type=float, required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument(
        "--limit", type=optional_int, default=None, help="training images to use (none = all)"
    )
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--checkpoint", required=True, help="output: torch state_dict")
    parser.add_argument("--metrics", required=True, help="output: per-epoch metrics CSV")
    parser.add_argument(
        "--init", required=True, help="output: the seeded initial weights (weights.npz format)"
    )
    args = parser.parse_args(argv)

    set_threads(args.threads)
    settings = TrainSettings(
        args.epochs, args.batch_size, args.lr, args.seed, args.device, args.limit
    )
    model, history = train(
        settings,
        load_split(args.train_images, args.train_labels),
        load_split(args.test_images, args.test_labels),
    )
    with atomic_output(args.checkpoint) as temporary:
        torch.save(model.state_dict(), temporary)
    write_metrics(args.metrics, history)
    with atomic_output(args.init) as temporary:
        save_weights(temporary, initial_weights(args.seed))


if __name__ == "__main__":
    main()
