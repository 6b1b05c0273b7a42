"""Benchmarks: contenders side by side in one process, 1 thread, medians; never run by tests.

python -m cnnbench.bench --weights results/model/weights.npz   # the network, every backend
python -m cnnbench.bench.ops                                  # im2col conv layers vs torch
"""
