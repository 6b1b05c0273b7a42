# No `sources` input: a downloaded file is what its checksums say, whatever code fetched it.
rule download:
    output:
        file="results/data/{filename}",
    params:
        **step_params(
            lambda wildcards: {"mirrors": DATASET["mirrors"], **DATA_FILES[wildcards.filename]},
            untracked=[MIRRORS],
        ),
    wildcard_constraints:
        filename="|".join(map(re.escape, DATA_FILES)),
    log:
        "results/logs/download_{filename}.log",
    threads: 1
    resources:
        mem_mb=256,
        runtime=30,
    conda:
        ENV
    shell:
        step("download")
