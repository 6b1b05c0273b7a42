"""numba_loops' compiled code on disk: a second process loads it instead of compiling (about 10 s
in every process otherwise) and computes the same logits, bit for bit."""

from __future__ import annotations

import json
import os
import subprocess
import sys

# A blocked conv of 5 x 5 = 25 positions (three blocks of 8 and one alone: both generated
# ``_block`` functions run, called through their addresses) and a general one after it.
CODE = """
import json
import numpy as np
from cnnbench.backends import numba_loops
from cnnbench.network.architecture import build
from cnnbench.training.seeding import initial_weights
model = {"layers": [{"conv": numba_loops.BLOCK_CHANNELS, "kernel": 3, "padding": 1},
                    {"conv": 3, "kernel": 2}], "hidden": [4]}
architecture = build(model, (1, 5, 5), 3)
backend = numba_loops.NumbaLoopsBackend(initial_weights(0, architecture), architecture)
x = np.random.default_rng(0).random((3, 1, 5, 5), dtype=np.float32)
stats = numba_loops._run.stats
print(json.dumps({
    "run": [sum(stats.cache_hits.values()), sum(stats.cache_misses.values())],
    "blocks": [block.cache_hits for block in numba_loops._compile_blocks()],
    "logits": backend.predict(x).tobytes().hex(),
}))
"""


def _process(cache_dir) -> dict:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache_dir)}
    result = subprocess.run(
        [sys.executable, "-c", CODE], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def test_a_second_process_loads_the_compiled_code(tmp_path):
    cache_dir = tmp_path / "numba"
    first = _process(cache_dir)
    assert first["run"] == [0, 1] and first["blocks"] == [0, 0]  # compiled, and written
    assert len(list((cache_dir / "cnnbench_numba_loops").glob("block_*.py"))) == 2
    second = _process(cache_dir)
    assert second["run"] == [1, 0] and second["blocks"] == [1, 1]  # loaded, nothing compiled
    assert second["logits"] == first["logits"]


WIDTHS = """
import json, re
import llvmlite.binding
from cnnbench.backends import numba_loops
block = numba_loops._compile_blocks()[0]
print(json.dumps({
    "avx512": "+avx512f" in llvmlite.binding.get_host_cpu_features().flatten().split(","),
    "widths": sorted({int(n) for n in re.findall(r"<(\\d+) x float>", block.inspect_llvm())}),
}))
"""


def test_the_block_is_vectorised_at_the_cpus_whole_width(tmp_path):
    """On an AVX-512 CPU, ``_block``'s sums are 16-float vectors, not LLVM's preferred 8 on some
    Intel CPUs (``numba_full_width_vectors``), so its 8 x 32 sums fit the registers."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba")}
    env.pop("NUMBA_CPU_FEATURES", None)
    result = subprocess.run(
        [sys.executable, "-c", WIDTHS], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads(result.stdout)
    assert max(record["widths"]) == (16 if record["avx512"] else 8), record
