"""This machine's limits (cnnbench.bench.machine), recorded with the environment they were
measured in: the roofs the report holds each backend's layers to.

Job: output json; settings {} (one thread, always: single-thread limits). Writes the limits
({"threads", "matmul", "numba_dot", "peak_gflops", "caches", "bandwidth", "roofs",
"load_average"}) and "environment" (steps.environment's record at 1 thread).
"""

from __future__ import annotations

from cnnbench.bench.machine import describe, measure
from cnnbench.common.files import write_json
from cnnbench.common.job import Job, run_job
from cnnbench.steps.environment import collect


def run(job: Job) -> None:
    environment = collect(1)
    limits = measure()
    print(describe(limits))
    write_json(limits | {"environment": environment}, job.path("output", "json"))


if __name__ == "__main__":
    run_job(run)
