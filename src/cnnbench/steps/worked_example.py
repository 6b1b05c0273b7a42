"""PyTorch's answer to the seed's worked example, for the report (which never runs torch).

Job: output json.
"""

from __future__ import annotations

from cnnbench.common.files import write_json
from cnnbench.common.job import Job, run_job
from cnnbench.ops.worked_example import PADDING, STRIDE, example_inputs


def torch_result() -> dict:
    """``torch.nn.functional.conv2d`` on the example, in float64, as the report reads it."""
    import torch

    x, w, b = (torch.from_numpy(array) for array in example_inputs())
    output = torch.nn.functional.conv2d(x, w, b, stride=STRIDE, padding=PADDING)
    return {
        "function": "torch.nn.functional.conv2d",
        "torch": torch.__version__,
        "output": output.tolist(),
    }


def run(job: Job) -> None:
    write_json(torch_result(), job.path("output", "json"))


if __name__ == "__main__":
    run_job(run)
