"""Pipeline steps: what the Snakemake rules run, one module each, never imported by the library.

Each runs as ``python -m cnnbench.steps.<step> JOB`` (the convention in ``cnnbench.common.job``):
download, train, train_numpy, export, gradcheck, worked_example, infer, gather, throughput, agreement,
environment.
"""
