"""A fault in the user's data, settings or job costs one line and exit status 2, never a
traceback: train and inference run as the rules run them (``python -m cnnbench.steps.X JOB``)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from test_data import write_idx

from cnnbench import data
from cnnbench.network.architecture import SEED

TRAIN = {
    "epochs": 1,
    "batch_size": 4,
    "lr": 0.001,
    "seed": 0,
    "device": "cpu",
    "limit": None,
    "threads": 1,
}
INFER = {"backend": "torch", "limit": 4, "shard": 0, "shards": 1, "warmup": 0, "threads": 1}


def run_step(step: str, job: dict | str) -> str:
    """The step's one line on stderr (asserting exit 2, one line, no traceback)."""
    text = job if isinstance(job, str) else json.dumps(job, default=str)
    result = subprocess.run(
        [sys.executable, "-m", f"cnnbench.steps.{step}", text],
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith(f"cnnbench.steps.{step}: error: ")
    return lines[0].removeprefix(f"cnnbench.steps.{step}: error: ")


@pytest.fixture
def split(tmp_path):
    """Eight blank 28x28 images with valid labels."""
    images = write_idx(tmp_path / "images.idx", data.IMAGES_MAGIC, (8, 28, 28), bytes(8 * 784))
    labels = write_idx(tmp_path / "labels.idx", data.LABELS_MAGIC, (8,), bytes(range(8)))
    return images, labels


def train_job(tmp_path, images, labels, **settings):
    return {
        "input": {
            "train_images": images,
            "train_labels": labels,
            "test_images": images,
            "test_labels": labels,
        },
        "output": {"checkpoint": tmp_path / "c.pt", "metrics": tmp_path / "m.csv"},
        "settings": {"train": TRAIN | settings, "architecture": SEED.to_dict()},
    }


def test_train_label_out_of_range(tmp_path, split):
    images, _ = split
    labels = write_idx(tmp_path / "bad.idx", data.LABELS_MAGIC, (8,), bytes([200] + [1] * 7))
    line = run_step("train", train_job(tmp_path, images, labels))
    assert line.startswith(f"{labels}: label 200 at index 0 (1 labels in all) is outside 0..9")
    assert not (tmp_path / "c.pt").exists()


def test_train_images_of_another_size(tmp_path, split):
    _, labels = split
    small = write_idx(tmp_path / "small.idx", data.IMAGES_MAGIC, (8, 14, 14), bytes(8 * 196))
    line = run_step("train", train_job(tmp_path, small, labels))
    assert line.startswith(f"{small}: images are 14x14 pixels, the network takes 28x28")


def test_train_missing_file(tmp_path, split):
    images, _ = split
    line = run_step("train", train_job(tmp_path, images, tmp_path / "nowhere.idx"))
    assert line.startswith(f"{tmp_path / 'nowhere.idx'}: cannot read (")


def test_train_limit_beyond_the_data(tmp_path, split):
    line = run_step("train", train_job(tmp_path, *split, limit=9))
    assert line == "train.limit 9 exceeds the 8 training images"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_train_on_cuda_without_cuda(tmp_path, split):
    line = run_step("train", train_job(tmp_path, *split, device="cuda"))
    assert line == (
        "train.device is 'cuda' but torch finds no CUDA device here; set train.device to auto or cpu"
    )


def test_train_settings_not_from_the_config(tmp_path, split):
    job = train_job(tmp_path, *split)
    del job["settings"]["train"]["lr"]
    line = run_step("train", job)
    assert line.startswith("train settings must be exactly threads, epochs, batch_size, lr, seed")


def test_a_job_that_is_not_json():
    assert run_step("train", "{epochs: 1}").startswith("the job is not valid JSON (")


def test_infer_label_out_of_range(tmp_path, split, weights_path):
    from conftest import manifest_of

    images, _ = split
    labels = write_idx(tmp_path / "bad.idx", data.LABELS_MAGIC, (8,), bytes([3] * 7 + [10]))
    job = {
        "input": {
            "weights": weights_path,
            "manifest": manifest_of(weights_path),
            "test_images": images,
            "test_labels": labels,
        },
        "output": {"csv": tmp_path / "p.csv", "meta": tmp_path / "p.json"},
        "settings": INFER,
    }
    assert run_step("infer", job).startswith(f"{labels}: label 10 at index 7")
    job["input"]["test_labels"] = split[1]
    job["settings"] = INFER | {"limit": 9}
    assert run_step("infer", job) == "inference.limit 9 exceeds the 8 test images"
    assert not (tmp_path / "p.csv").exists()
