# One download per dataset (cnnbench.common.sweep): without a sweep results/data/<file>, in a
# sweep results/data/<dataset>/<file>, whichever experiments use it.


# No `sources` input: a downloaded file is what its checksums say, whatever code fetched it.
rule download:
    output:
        file=f"{DATA}/{{filename}}",
    params:
        **step_params(download_settings, untracked=[MIRRORS]),
    wildcard_constraints:
        filename="|".join(
            sorted({re.escape(spec["file"]) for d in DATASETS.values() for spec in d["files"].values()})
        ),
    log:
        f"results/logs/download_{'{dataset}_' if SWEEP else ''}{{filename}}.log",
    threads: 1
    resources:
        mem_mb=256,
        runtime=30,
    conda:
        ENV
    shell:
        step("download")
