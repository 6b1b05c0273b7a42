rule download:
    output:
        "results/data/{filename}",
    params:
        mirrors=lambda wildcards: " ".join(f"--mirror {shlex.quote(url)}" for url in DATASET["mirrors"]),
        md5=lambda wildcards: DATA_FILES[wildcards.filename].get("md5", ""),
        sha256=lambda wildcards: DATA_FILES[wildcards.filename].get("sha256", ""),
        size=lambda wildcards: (
            f"--size {DATA_FILES[wildcards.filename]['size']}"
            if "size" in DATA_FILES[wildcards.filename]
            else ""
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
        "python -m cnnbench.data --file {wildcards.filename} {params.mirrors} "
        "--md5 '{params.md5}' --sha256 '{params.sha256}' {params.size} --out {output} > {log} 2>&1"
