"""Pipeline steps: what the Snakemake rules run, one module each, never imported by the library.

Each runs as ``python -m cnnbench.steps.<step> JOB`` (the convention in ``cnnbench.job``):
download, train, export, gradcheck, worked_example, infer, gather, throughput, agreement,
environment.
"""
