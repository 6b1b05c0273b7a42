import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cnnbench.common.files import atomic_output
from cnnbench.common.runtime import declared_threads, set_threads

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.mark.parametrize(
    ("actual", "workflow_cores", "machine_cores", "expected"),
    [
        (1, 2, 2, 1),  # --cores fits the machine: declare what is used
        (2, 2, 2, 2),
        (1, 4, 2, 2),  # --cores 4 on 2 cores: two 1-thread jobs fill the 4 declared cores
        (2, 4, 2, 4),
        (1, 3, 2, 2),  # ceil(1.5)
        (4, 8, 2, 8),  # capped at --cores
        (1, None, 2, 1),  # cluster: no global core limit
    ],
)
def test_declared_threads(actual, workflow_cores, machine_cores, expected):
    assert declared_threads(actual, workflow_cores, machine_cores) == expected


def test_declared_threads_never_oversubscribe():
    # Whatever mix of jobs Snakemake packs into --cores, the real threads fit the machine.
    for machine in (1, 2, 4):
        for cores in range(machine, 4 * machine + 1):
            for actual in range(1, machine + 1):
                declared = declared_threads(actual, cores, machine)
                jobs_that_fit = cores // declared
                assert jobs_that_fit * actual <= machine


def test_atomic_output_moves_into_place_only_on_success(tmp_path):
    target = tmp_path / "sub" / "table.csv"
    with atomic_output(target) as temporary:
        temporary.write_text("a,b\n")
        assert not target.exists()
    assert target.read_text() == "a,b\n"
    with pytest.raises(RuntimeError), atomic_output(target) as temporary:
        temporary.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "a,b\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["table.csv"]


def test_set_threads_applies_to_torch_and_blas():
    import torch
    from threadpoolctl import threadpool_info

    before = torch.get_num_threads()
    try:
        set_threads(1)
        assert torch.get_num_threads() == 1
        assert os.environ["OMP_NUM_THREADS"] == "1"
        assert all(pool["num_threads"] == 1 for pool in threadpool_info())
        with pytest.raises(ValueError, match="threads must be >= 1"):
            set_threads(0)
    finally:
        set_threads(before)


def declared_by_rule(dry_run_output: str) -> dict[str, set[int]]:
    """Threads each rule's jobs declare, read from a dry run (Snakemake omits `threads: 1`)."""
    declared: dict[str, set[int]] = {}
    for match in re.finditer(r"^rule (\w+):\n((?:[ \t]+.*\n?)*)", dry_run_output, re.MULTILINE):
        threads = re.search(r"^\s+threads: (\d+)$", match.group(2), re.MULTILINE)
        declared.setdefault(match.group(1), set()).add(int(threads.group(1)) if threads else 1)
    return declared


MACHINE_CORES = os.cpu_count() or 1


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        # A local run with --cores 8: a whole-machine job (throughput) takes all 8; on a machine
        # with fewer cores, every declaration scales up (see declared_threads).
        (
            "default",
            {
                "train": declared_threads(2, 8, MACHINE_CORES),
                "export_weights": declared_threads(1, 8, MACHINE_CORES),
                "throughput": 8,
            },
        ),
        # Inside a cluster job Snakemake runs again with --cores set to the node's cores: each
        # job must declare what it uses, the threads it was submitted with, or srun refuses to
        # start it ("More processors requested than permitted").
        ("remote", {"train": 2, "export_weights": 1, "throughput": 1}),
    ],
)
def test_cluster_job_declares_the_threads_it_was_submitted_with(
    tmp_path, run_snakemake, mode, expected
):
    result = run_snakemake(
        tmp_path,
        {"train": {"threads": 2}},
        "--dry-run",
        "--cores",
        "8",
        "--mode",
        mode,
        "results/throughput.csv",
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    declared = declared_by_rule(result.stdout + result.stderr)
    assert {rule: declared[rule] for rule in expected} == {
        rule: {threads} for rule, threads in expected.items()
    }


def test_set_threads_holds_for_torch_once_numba_is_loaded():
    """numba's first set_num_threads starts its OpenMP pool, which reset torch (once torch had read
    its thread count) to NUMBA_NUM_THREADS: `assert 2 == 1` above whenever an earlier test in the
    same pytest worker had imported numba (a fresh clone's test order)."""
    code = (
        "import torch, numba\n"
        "from cnnbench.common.runtime import set_threads\n"
        "torch.get_num_threads()\n"  # as the test above does first
        "set_threads(1)\n"
        "print(torch.get_num_threads(), numba.get_num_threads())\n"
    )
    env = {**os.environ, "NUMBA_NUM_THREADS": "2", "OMP_NUM_THREADS": "2"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1", "1"]
