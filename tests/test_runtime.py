import os

import pytest

from cnnbench.files import atomic_output
from cnnbench.runtime import declared_threads, set_threads


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
