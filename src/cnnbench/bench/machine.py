"""This machine's limits, measured on one thread: the roofs the backends are held to.

- Compute: the float32 rate of a matrix multiply through NumPy's BLAS (what numpy_im2col's
  matmuls can reach) and through ONNX Runtime (its own kernels, which may use wider vectors),
  and numba's rate on a dot product held in the L1 cache (numba_loops' inner loops are such dot
  products); the peak is the highest.
- Memory: a STREAM triad (``a = b + s * c``, float32, compiled by numba) over arrays of growing
  total size, from inside the L1 data cache to beyond the last-level cache; bandwidth counts the
  bytes the kernel names (2 reads and a write per element, STREAM's convention). Each cache
  level's roof is the best bandwidth at sizes that fit it and not the level below; ``memory`` is
  the best at twice the last level and more.

    python -m cnnbench.bench.machine [--json results/machine.json]

Best-of timings of short calls (the machine's capability, not a typical call: on a shared machine
some short calls run undisturbed); a few seconds in all, more where the last cache is large.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from cnnbench.common.files import write_json
from cnnbench.common.runtime import load_average, numba_full_width_vectors, set_threads

PEAKS = ("matmul", "onnxruntime_matmul", "numba_dot")  # the compute rates measured
CACHE_FOLDER = Path("/sys/devices/system/cpu/cpu0/cache")
SMALLEST_BYTES = 16 * 1024  # triad footprints start here (inside any L1 data cache)
FALLBACK_LAST_LEVEL_BYTES = 32 * 1024 * 1024  # when the caches cannot be read
MATMUL_SIZE = 384  # float32 operands in the L2 cache; about a millisecond a call
BYTES_PER_CALL = 2_000_000  # each triad call repeats its pass until about this much has moved
TRIAD_STREAMS = 3  # b and c read, a written: 12 bytes per float32 element
ROUNDS = 100  # best of, for every rate: short calls, so some run undisturbed
# a triad footprint's calls stop after about this long (but at least MIN_ROUNDS): beyond the
# last cache a call is one pass over up to 4x its size (2 GiB where the L3 holds 480 MiB: 0.13 s
# a call, 100 rounds 13 s; the whole step took 34 s, alone on the machine, as a timed job)
SECONDS_PER_FOOTPRINT = 0.5
MIN_ROUNDS = 3


def caches(folder: Path = CACHE_FOLDER) -> list[dict]:
    """The data and unified caches one core sees, smallest level first: [{"level", "type",
    "bytes"}] from Linux's sysfs; [] where it is not readable."""
    found = []
    for index in sorted(folder.glob("index*")):
        try:
            kind = (index / "type").read_text().strip()
            level = int((index / "level").read_text())
            size = (index / "size").read_text().strip()
        except (OSError, ValueError):
            continue
        if kind == "Instruction":
            continue
        units = {"K": 1024, "M": 1024**2, "G": 1024**3}
        number = int(size.rstrip("KMG")) * units.get(size[-1], 1)
        found.append({"level": level, "type": kind, "bytes": number})
    return sorted(found, key=lambda cache: cache["level"])


def best_seconds(
    function, rounds: int, clock=time.perf_counter, budget: float | None = None
) -> float:
    """The fastest of ``rounds`` calls (after one untimed): short calls, many of them, so on a
    shared machine some run without being descheduled. ``budget`` (seconds): fewer rounds where
    the untimed call says they would take longer, but at least MIN_ROUNDS."""
    started = clock()
    function()
    if budget is not None:
        first = clock() - started
        rounds = min(rounds, max(MIN_ROUNDS, int(budget / first) if first > 0 else rounds))
    best = float("inf")
    for _ in range(rounds):
        started = clock()
        function()
        best = min(best, clock() - started)
    return best


def matmul_gflops(size: int = MATMUL_SIZE, rounds: int = ROUNDS, clock=time.perf_counter) -> float:
    """Best single-call float32 matrix-multiply rate (GFLOP/s) of NumPy's BLAS on ``size``-square
    operands (about a millisecond a call)."""
    a = np.random.default_rng(0).random((size, size), dtype=np.float32)
    out = np.empty_like(a)
    return 2 * size**3 / best_seconds(lambda: np.matmul(a, a, out=out), rounds, clock) / 1e9


def onnxruntime_matmul_gflops(size: int = MATMUL_SIZE, rounds: int = ROUNDS) -> float:
    """The same matrix multiply through ONNX Runtime (its own MLAS kernels, the peer's session
    settings): the production peer's arithmetic may outrun NumPy's BLAS."""
    import onnxruntime
    from onnx import TensorProto, helper

    from cnnbench.backends.onnxruntime_peer import session_options

    values = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [size, size]) for n in "abc"]
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])], "matmul", values[:2], values[2:]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    session = onnxruntime.InferenceSession(
        model.SerializeToString(),
        sess_options=session_options(),
        providers=["CPUExecutionProvider"],
    )
    a = np.random.default_rng(0).random((size, size), dtype=np.float32)
    return 2 * size**3 / best_seconds(lambda: session.run(None, {"a": a, "b": a}), rounds) / 1e9


def _kernels():
    import numba

    numba_full_width_vectors()  # numba_loops' vector width, so the rate is the one it can reach

    @numba.njit(fastmath=True)
    def dot(a, b, repeats):
        total = np.float32(0)
        for _ in range(repeats):
            partial = np.float32(0)
            for i in range(a.shape[0]):
                partial += a[i] * b[i]
            total += partial
        return total

    @numba.njit(fastmath=True)
    def triad(a, b, c, scalar, repeats):
        for r in range(repeats):  # inside the kernel: no call overhead on small arrays
            s = scalar + np.float32(r)  # a new value each pass, so no pass can be skipped
            for i in range(a.shape[0]):
                a[i] = b[i] + s * c[i]

    return dot, triad


def numba_dot_gflops(width: int = 1024, flops: float = 2e6, rounds: int = ROUNDS) -> float:
    """Best rate (GFLOP/s) of a numba-compiled float32 dot product of ``width`` elements (L1
    resident), repeated to about ``flops`` per call."""
    dot, _ = _kernels()
    rng = np.random.default_rng(0)
    a, b = rng.random(width, dtype=np.float32), rng.random(width, dtype=np.float32)
    repeats = max(1, int(flops // (2 * width)))
    return 2 * width * repeats / best_seconds(lambda: dot(a, b, repeats), rounds) / 1e9


def footprints(last_level_bytes: int) -> list[int]:
    """Triad footprints (bytes of all three arrays): doubling from SMALLEST_BYTES to four times
    the last-level cache."""
    sizes = [SMALLEST_BYTES]
    while sizes[-1] < 4 * last_level_bytes:
        sizes.append(sizes[-1] * 2)
    return sizes


def triad_bandwidth(sizes: list[int], bytes_per_call: float = BYTES_PER_CALL) -> list[dict]:
    """[{"bytes": footprint, "gb_per_s": best triad bandwidth}] for each footprint: the kernel
    repeats its pass to move about ``bytes_per_call`` (at least one pass), best of ROUNDS (of
    fewer, down to MIN_ROUNDS, where they would take over SECONDS_PER_FOOTPRINT)."""
    _, triad = _kernels()
    rows = []
    for footprint in sizes:
        n = footprint // (4 * TRIAD_STREAMS)
        a = np.zeros(n, np.float32)
        b = np.ones(n, np.float32)
        c = np.full(n, 2.0, np.float32)
        repeats = max(1, int(bytes_per_call // (TRIAD_STREAMS * 4 * n)))
        best = best_seconds(
            lambda a=a, b=b, c=c, r=repeats: triad(a, b, c, np.float32(0.5), r),
            ROUNDS,
            budget=SECONDS_PER_FOOTPRINT,
        )
        moved = TRIAD_STREAMS * 4 * n * repeats
        rows.append({"bytes": TRIAD_STREAMS * 4 * n, "gb_per_s": moved / best / 1e9})
    return rows


def roofs(cache_list: list[dict], bandwidth: list[dict]) -> dict[str, float]:
    """Bandwidth roof (GB/s) per cache level ("L1", "L2", ...) and "memory": the best triad at
    footprints that fit the level but not the one below; memory: at twice the last level and up."""
    out = {}
    below = 0
    for cache in cache_list:
        fitting = [r["gb_per_s"] for r in bandwidth if below < r["bytes"] <= cache["bytes"]]
        if fitting:
            out[f"L{cache['level']}"] = max(fitting)
        below = cache["bytes"]
    beyond = [r["gb_per_s"] for r in bandwidth if r["bytes"] >= 2 * below] if below else []
    out["memory"] = max(beyond) if beyond else min(r["gb_per_s"] for r in bandwidth)
    return out


def measure(bytes_per_call: float = BYTES_PER_CALL) -> dict:
    """Every limit on one thread, with the caches and the load average before and after."""
    set_threads(1)
    before = load_average()
    cache_list = caches()
    last_level = cache_list[-1]["bytes"] if cache_list else FALLBACK_LAST_LEVEL_BYTES
    bandwidth = triad_bandwidth(footprints(last_level), bytes_per_call)
    result = {
        "threads": 1,
        "matmul": {"size": MATMUL_SIZE, "gflops": matmul_gflops()},
        "onnxruntime_matmul": {"size": MATMUL_SIZE, "gflops": onnxruntime_matmul_gflops()},
        "numba_dot": {"width": 1024, "gflops": numba_dot_gflops()},
        "caches": cache_list,
        "bandwidth": bandwidth,
        "roofs": roofs(cache_list, bandwidth),
        "load_average": [before, load_average()],
    }
    result["peak_gflops"] = max(result[key]["gflops"] for key in PEAKS)
    return result


def describe(limits: dict) -> str:
    lines = [
        f"float32 peak, 1 thread: matmul (BLAS) {limits['matmul']['gflops']:.1f} GFLOP/s; "
        f"matmul (ONNX Runtime) {limits['onnxruntime_matmul']['gflops']:.1f} GFLOP/s; "
        f"numba dot product {limits['numba_dot']['gflops']:.1f} GFLOP/s",
        "caches: "
        + (", ".join(f"L{c['level']} {c['bytes'] // 1024} KiB" for c in limits["caches"]) or "?"),
        "triad bandwidth: "
        + ", ".join(f"{r['bytes'] / 1024:.0f} KiB {r['gb_per_s']:.1f}" for r in limits["bandwidth"])
        + " GB/s",
        "roofs: " + ", ".join(f"{k} {v:.1f} GB/s" for k, v in limits["roofs"].items()),
        f"load average before / after: {limits['load_average']}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m cnnbench.bench.machine", description=__doc__)
    parser.add_argument("--json", type=Path, help="also write the limits to this JSON file")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    limits = measure()
    print(describe(limits))
    if args.json:
        write_json(limits, args.json)


if __name__ == "__main__":
    main()
