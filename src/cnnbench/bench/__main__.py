"""Side-by-side benchmark of every backend: latency at batch 1, throughput at a large batch.

``python -m cnnbench.bench --weights results/model/weights.npz`` loads all backends in one process
with an explicit thread count (default 1), then measures in interleaved rounds (each round times
every backend once, one after another, never two at once), so a change in machine load hits all
backends alike. Prints medians, their ratios to ONNX Runtime (the production peer) and to the FLOP
floor (the network's multiply-adds at this BLAS's large-matmul rate), the BLAS kernel in use, the
load average before and after, and the time per layer of numpy_im2col and numba_loops (their
``Backend.stages``) and of ONNX Runtime (its own profiler, per node: ``cnnbench.bench.layers``).

``--processes N`` repeats the whole measurement in N fresh processes, one after another, and prints
the min / median / max over processes of each backend's median: what moves between processes
(memory layout, code placement, frequency) shows there and not within one process.
A benchmark to read, not a test.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from cnnbench import backends
from cnnbench.bench.layers import layer_and_forward_seconds, stage_seconds
from cnnbench.bench.machine import matmul_gflops
from cnnbench.common.errors import UserError
from cnnbench.common.files import write_json
from cnnbench.common.runtime import load_average, set_threads
from cnnbench.common.timing import timed_predictions
from cnnbench.data import load_split, to_model_input
from cnnbench.network.weights import verify_exported

# the backends whose per-layer times are printed: Backend.stages, the peer by its own profiler
STAGED = ("onnxruntime", "numpy_im2col", "numba_loops")


def ratio_base(names) -> str | None:
    """The backend every ratio is taken to: a production peer (``backends.PEERS``), else the
    reference, whichever is among ``names`` first in that order; None if neither is."""
    names = list(names)
    peers = [name for name in names if name in backends.PEERS]
    return next(iter(peers), backends.REFERENCE if backends.REFERENCE in names else None)


# --clock: wall time (what a user waits), or this thread's CPU time, which leaves out the time the
# process spends descheduled: on a machine shared by more runnable processes than cores, a call that
# outlasts a scheduler slice (a batch of 1000) is charged for other processes' work, a 100 us call
# mostly is not, so wall-clock medians favour short calls there
CLOCKS = {"wall": time.perf_counter, "cpu": time.thread_time}


def batch_seconds_per_image(
    backend: backends.Backend, x: np.ndarray, clock=time.perf_counter
) -> float:
    started = clock()
    backend.predict(x)
    return (clock() - started) / len(x)


def latencies(backend: backends.Backend, x: np.ndarray, clock=time.perf_counter) -> list[float]:
    """Seconds of one ``predict`` call per image of ``x``, the clock around the call only."""
    if clock is time.perf_counter:
        return timed_predictions(backend.predict, range(len(x)), x)[1].tolist()
    seconds = []
    predict = backend.predict
    for i in range(len(x)):
        image = x[i : i + 1]
        before = clock()
        predict(image)
        seconds.append(clock() - before)
    return seconds


def stage_times(
    backend: backends.Backend, x: np.ndarray, rounds: int, clock=time.perf_counter
) -> dict[str, float]:
    """Median seconds per image of each layer of ``backend``'s forward pass (``Backend.stages``)
    on batch ``x``."""
    stages = backend.stages()
    passes = [stage_seconds(stages, x, clock) for _ in range(rounds)]
    return {name: statistics.median(p[name] for p in passes) / len(x) for name, _ in stages}


def blas_description() -> str:
    from threadpoolctl import threadpool_info

    blas = [
        f"{lib['internal_api']} {lib.get('version')} kernel {lib.get('architecture')} "
        f"threads {lib['num_threads']}"
        for lib in threadpool_info()
        if lib["user_api"] == "blas"
    ]
    tuning = {k: v for k, v in os.environ.items() if k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    return f"{'; '.join(blas)}; environment {tuning or 'has no OPENBLAS_CORETYPE/L2_SIZE'}"


def measure(args: argparse.Namespace, x: np.ndarray) -> dict:
    """Medians of every backend in this process: {"latency": {name: s}, "batch": {name: s per
    image}, "batches": {name: size}, "compile_s": {name: s}}, plus the load average around it."""
    load_before = load_average()
    clock = CLOCKS[args.clock]
    loaded = {name: backends.load(name, args.weights, args.architecture) for name in args.backends}
    # slow backends (seconds per image) get a smaller sample
    sizes = {name: args.loop_images if name in backends.SLOW else args.images for name in loaded}
    batches = {
        name: args.loop_images if name in backends.SLOW else args.batch_size for name in loaded
    }
    for backend in loaded.values():  # warm-up: buffers, caches, lazy initialisation
        backend.predict(x[:1])
    for name, backend in loaded.items():
        backend.predict(x[: batches[name]])
    latency = collections.defaultdict(list)
    throughput = collections.defaultdict(list)
    for _ in range(args.rounds):
        for name, backend in loaded.items():
            sample = x[: sizes[name]]
            latency[name] += latencies(backend, sample, clock)
            throughput[name].append(batch_seconds_per_image(backend, x[: batches[name]], clock))
    return {
        "latency": {name: statistics.median(latency[name]) for name in loaded},
        "batch": {name: statistics.median(throughput[name]) for name in loaded},
        "batches": batches,
        "compile_s": {name: b.compile_s for name, b in loaded.items() if b.compile_s is not None},
        "load_average": [load_before, load_average()],
        "loaded": loaded,
    }


def ratio_columns(seconds: float, peer: float | None, floor: float) -> str:
    versus_peer = f"{seconds / peer:7.2f}x" if peer else f"{'-':>8}"
    return f"{versus_peer} {seconds / floor:7.1f}x"


def print_table(result: dict, floor: float) -> None:
    latency, batch = result["latency"], result["batch"]
    base = ratio_base(latency)
    peer_latency, peer_batch = latency.get(base), batch.get(base)
    versus = f"vs {'peer' if base in backends.PEERS else base}"
    print(
        f"\n{'backend':14} {'batch 1 median':>15} {versus:>8} {'vs floor':>8}   "
        f"{'batch':>5} {'per image':>11} {'images/s':>10} {versus:>8} {'vs floor':>8}"
    )
    for name in latency:
        label = f"{name}{' (peer)' if name in backends.PEERS else ''}"
        print(
            f"{label:21} {latency[name] * 1e6:8.1f} us {ratio_columns(latency[name], peer_latency, floor)}   "
            f"{result['batches'][name]:5d} {batch[name] * 1e6:8.1f} us {1 / batch[name]:10.0f} "
            f"{ratio_columns(batch[name], peer_batch, floor)}"
        )
    print(
        f"(ratios: time per image relative to {base}"
        f"{', the production peer,' if base in backends.PEERS else ''} and to the FLOP floor; "
        "below 1 is faster)"
    )
    if {"numba_loops", "numpy_im2col"} <= latency.keys():
        ratio = latency["numba_loops"] / latency["numpy_im2col"]
        print(f"numba_loops / numpy_im2col at batch 1: {ratio:.2f}x")


def print_stages(backend: backends.Backend, x: np.ndarray, args, flops: int, peak: float) -> None:
    for batch in (x[:1], x[: args.batch_size]):
        # batch 1 is ~100 us: many more rounds for a stable median
        rounds = args.rounds * (100 if len(batch) == 1 else 1)
        if backend.name in backends.PEERS:  # its profiler's per-node times (wall clock)
            stages = layer_and_forward_seconds(backend, batch, rounds)[0]
            how = "its profiler, per node, wall clock; "
        else:
            stages = stage_times(backend, batch, rounds, CLOCKS[args.clock])
            how = ""
        total = sum(stages.values())
        print(
            f"\n{backend.name} layers, batch {len(batch)}: {total * 1e6:.1f} us per image "
            f"({how}{flops / total / 1e9:.1f} GFLOP/s, "
            f"{flops / total / 1e9 / peak:.0%} of the matmul rate)"
        )
        for stage, seconds in stages.items():
            print(f"  {stage:14} {seconds * 1e6:8.1f} us {seconds / total:6.1%}")


def spread(values: list[float]) -> str:
    low, middle, high = min(values), statistics.median(values), max(values)
    return (
        f"{low * 1e6:9.1f} {middle * 1e6:9.1f} {high * 1e6:9.1f} us "
        f"{(low / middle - 1):+6.0%} {(high / middle - 1):+6.0%}"
    )


def across_processes(args: argparse.Namespace, argv: list[str]) -> None:
    """Run this benchmark ``args.processes`` times in fresh processes; summarise the medians."""
    child_argv = []
    skip = False
    for item in argv:  # the same arguments, less --processes and --json
        if skip:
            skip = False
        elif item in ("--processes", "--json"):
            skip = True
        elif not item.startswith(("--processes=", "--json=")):
            child_argv.append(item)
    results = []
    with tempfile.TemporaryDirectory() as folder:
        for k in range(args.processes):
            path = Path(folder) / f"{k}.json"
            print(f"\n=== process {k + 1} of {args.processes} ===", flush=True)
            command = [sys.executable, "-m", "cnnbench.bench", *child_argv, "--json", str(path)]
            if "--no-stages" not in command:
                command.append("--no-stages")
            status = subprocess.run(command).returncode
            if status:  # the process has said why (one line); stop there, with its status
                sys.exit(status)
            results.append(json.loads(path.read_text()))
    names = list(results[0]["latency"])
    print(
        f"\nacross {args.processes} fresh processes: min / median / max of each backend's median, "
        "and min and max relative to the median"
    )
    for key, title in (("latency", "batch 1"), ("batch", f"batch {args.batch_size}")):
        print(f"\n{title:21} {'min':>9} {'median':>9} {'max':>9}    {'-':>6} {'+':>6}")
        for name in names:
            print(f"{name:21} {spread([r[key][name] for r in results])}")
        base = ratio_base(names)
        if base:
            print(f"{'ratio to ' + base:21}")
            for name in names:
                if name != base:
                    ratios = [r[key][name] / r[key][base] for r in results]
                    print(
                        f"  {name:19} {min(ratios):8.2f}x {statistics.median(ratios):8.2f}x "
                        f"{max(ratios):8.2f}x"
                    )
    if args.json:
        summary = {
            "processes": args.processes,
            "clock": args.clock,
            "threads": args.threads,
            "batch_size": args.batch_size,
            "per_process": results,
        }
        write_json(summary, args.json)
    loads = "; ".join(
        " -> ".join(f"{before[0]:.1f}" for before in r["load_average"]) for r in results
    )
    print(f"\n1-minute load average (before -> after) per process: {loads}")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m cnnbench.bench", description=__doc__)
    parser.add_argument("--weights", required=True, type=Path)
    parser.add_argument(
        "--manifest",
        type=Path,
        help="the export's manifest.json the weights are checked against "
        "(default: manifest.json beside the weights); it names the weights' network",
    )
    parser.add_argument(
        "--test-images", type=Path, default=Path("results/data/t10k-images-idx3-ubyte.gz")
    )
    parser.add_argument(
        "--test-labels", type=Path, default=Path("results/data/t10k-labels-idx1-ubyte.gz")
    )
    parser.add_argument(
        "--backends", nargs="+", default=list(backends.NAMES), choices=backends.NAMES
    )
    parser.add_argument("--images", type=int, default=200, help="batch-1 images per round")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--loop-images", type=int, default=2, help="images for numpy_loops")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        help="repeat the measurement in this many fresh processes and summarise their medians",
    )
    parser.add_argument(
        "--clock",
        choices=sorted(CLOCKS),
        default="wall",
        help="wall: elapsed time; cpu: this thread's CPU time (for a machine busy with other work)",
    )
    parser.add_argument(
        "--no-stages", action="store_true", help="skip the per-layer times of " + ", ".join(STAGED)
    )
    parser.add_argument(
        "--json",
        type=Path,
        help="also write the medians (every process's, with --processes) to this JSON file",
    )
    args = parser.parse_args(argv)
    if args.processes < 1:
        parser.error("--processes must be at least 1")
    if args.clock == "cpu" and args.threads != 1:
        parser.error("--clock cpu counts the calling thread only: use it with --threads 1")
    if args.processes > 1:
        across_processes(args, argv)
        return

    set_threads(args.threads)
    try:  # a fault in the user's files: one line, no traceback
        manifest = args.manifest or args.weights.with_name("manifest.json")
        # the manifest says which network the weights belong to
        args.architecture = verify_exported(args.weights, manifest)
        images, _ = load_split(args.test_images, args.test_labels, args.architecture)
    except UserError as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    x = to_model_input(images[: max(args.images, args.batch_size)])
    print(
        f"threads {args.threads}; clock {args.clock}; {blas_description()}; "
        f"load average {load_average()}"
    )
    flops = 2 * args.architecture.macs  # biases and ReLU not counted
    peak = matmul_gflops(clock=CLOCKS[args.clock])
    floor = flops / peak / 1e9
    result = measure(args, x)
    for name, seconds in result["compile_s"].items():
        print(f"{name}: compiled in {seconds:.2f} s (excluded from timings)")
    print(
        f"floor: {flops / 1e6:.2f} MFLOP per image at this BLAS's large-matmul rate "
        f"({peak:.0f} GFLOP/s) is {floor * 1e6:.1f} us"
    )
    print_table(result, floor)
    for name in STAGED if not args.no_stages else ():
        if name in result["loaded"]:
            print_stages(result["loaded"][name], x, args, flops, peak)
    print(f"\nload average after: {load_average()}")
    if args.json:
        saved = {key: result[key] for key in ("latency", "batch", "batches", "load_average")}
        write_json(saved | {"floor_s": floor, "clock": args.clock}, args.json)


if __name__ == "__main__":
    main()
