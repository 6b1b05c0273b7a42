"""Reference training in PyTorch: Adam + cross-entropy, deterministic on CPU.

Job: input train_images, train_labels, test_images, test_labels; output checkpoint (torch
state_dict), metrics (per-epoch CSV), init (the seeded initial weights, weights.npz format: the
NumPy trainer's start); settings: {"train": the config's ``train`` section, "architecture": the
network's record (``cnnbench.network.architecture``)}. The start and the batch order
come from ``cnnbench.training.seeding``, shared with the NumPy trainer.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch
from torch import nn

from cnnbench.common.errors import UserError
from cnnbench.common.files import atomic_output, write_rows
from cnnbench.common.job import Job, run_job
from cnnbench.common.runtime import keep_freed_memory, progress, set_threads
from cnnbench.data import load_split, to_model_input
from cnnbench.network.architecture import Architecture, from_dict
from cnnbench.network.torch_model import Net, pick_device
from cnnbench.network.weights import save_weights
from cnnbench.training.seeding import (
    EVAL_BATCH,
    METRIC_COLUMNS,
    TrainSettings,
    epoch_orders,
    initial_weights,
    seeded_model,
    training_subset,
)


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
    architecture: Architecture,
    train_split: tuple[np.ndarray, np.ndarray],
    test_split: tuple[np.ndarray, np.ndarray],
) -> tuple[Net, list[dict]]:
    """Train the reference model; return it (on CPU) and one metrics row per epoch."""
    device = pick_device(settings.device)
    train_images, train_labels = training_subset(settings, train_split)
    x_train = torch.from_numpy(to_model_input(train_images)).to(device)
    y_train = torch.from_numpy(train_labels.astype(np.int64)).to(device)
    x_test = torch.from_numpy(to_model_input(test_split[0])).to(device)
    y_test = torch.from_numpy(test_split[1].astype(np.int64)).to(device)

    model = seeded_model(settings.seed, architecture).to(device)
    # where the weights were made: their bits depend on it (recorded in metrics and manifest)
    trained_on = f"cuda ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "cpu"
    print(f"training on {trained_on}", file=sys.stderr)
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
            "device": trained_on,
        }
        history.append(row)
        print(
            f"epoch {epoch}: train loss {row['train_loss']:.4f}, test loss {test_loss:.4f}, "
            f"test accuracy {test_accuracy:.2%}, {row['seconds']:.1f} s",
            file=sys.stderr,
        )
    return model.cpu(), history


def run(job: Job) -> None:
    settings = dict(job.settings["train"])
    architecture = from_dict(job.settings["architecture"])
    try:
        threads = settings.pop("threads")
        train_settings = TrainSettings(**settings)
    except (KeyError, TypeError) as error:  # a job not written from a validated config
        fields = ", ".join(["threads", *TrainSettings.__dataclass_fields__])
        raise UserError(f"train settings must be exactly {fields} ({error})") from None
    set_threads(threads)
    keep_freed_memory()  # each step's arrays reuse the last step's memory
    model, history = train(
        train_settings,
        architecture,
        load_split(
            job.path("input", "train_images"), job.path("input", "train_labels"), architecture
        ),
        load_split(
            job.path("input", "test_images"), job.path("input", "test_labels"), architecture
        ),
    )
    with atomic_output(job.path("output", "checkpoint")) as temporary:
        torch.save(model.state_dict(), temporary)
    write_rows(history, (*METRIC_COLUMNS, "device"), job.path("output", "metrics"))
    with atomic_output(job.path("output", "init")) as temporary:
        save_weights(temporary, initial_weights(settings["seed"], architecture), architecture)


if __name__ == "__main__":
    run_job(run)
