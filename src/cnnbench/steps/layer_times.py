"""Where the time goes: every backend's seconds per image in each layer of the architecture, at
batch 1 and the large batch, beside its whole forward pass (cnnbench.bench.layers says how each
backend is split). Backends that cannot be split yet have no rows.

Job: input weights, manifest (the weights must have its sha256), test_images, test_labels; output
csv (COLUMNS); settings: the config's ``bench`` section (images, rounds, batch_size, loop_images)
with ``backends`` and ``threads`` from ``inference``.
"""

from __future__ import annotations

from cnnbench.backends import SLOW
from cnnbench.bench.layers import measure
from cnnbench.common.files import write_rows
from cnnbench.common.job import Job, run_job
from cnnbench.common.runtime import set_threads
from cnnbench.data import to_model_input
from cnnbench.steps import verified_test_split

COLUMNS = ["backend", "batch_size", "layer", "seconds", "forward_s", "method"]


def batches(settings: dict) -> dict[str, list[tuple[int, int]]]:
    """Per backend: (batch size, timed passes per block) at batch 1 and the large batch (once if
    they are the same); the slow backends' large batch is ``loop_images``, one pass per block."""
    out = {}
    for name in settings["backends"]:
        if name in SLOW:
            out[name] = [(size, 1) for size in sorted({1, settings["loop_images"]})]
        else:
            sizes = {1: settings["images"], settings["batch_size"]: settings["rounds"]}
            out[name] = sorted(sizes.items())
    return out


def run(job: Job) -> None:
    settings = job.settings
    set_threads(settings["threads"])
    architecture, images, _ = verified_test_split(job)
    x = to_model_input(images[: max(settings["batch_size"], settings["loop_images"])])
    rows, unsplit = measure(
        settings["backends"], job.path("input", "weights"), architecture, x, batches(settings)
    )
    for name in unsplit:
        print(f"{name}: no way to split it by layer yet (no Backend.stages()); left out")
    write_rows(rows, COLUMNS, job.path("output", "csv"))


if __name__ == "__main__":
    run_job(run)
