# Timed work. Every timed job declares threads through threads_for(), so even with --cores above
# the machine's core count no more threads are busy than there are cores while a clock runs.
# The short timed jobs (the fast backends, throughput) take the whole machine: run one at a time,
# alone, their numbers compare cleanly. The loop backend's shards share it, as they must.


rule infer_shard:
    input:
        weights=WEIGHTS,
        **TEST_DATA,
    output:
        # Gathered into results/inference/{backend}.csv, then removed.
        csv=temp("results/inference/shards/{backend}/{shard}.csv"),
        meta=temp("results/inference/shards/{backend}/{shard}.json"),
    params:
        shards=lambda wildcards: shards_of(wildcards.backend),
        limit=optional(INFERENCE["limit"]),
        warmup=INFERENCE["warmup"],
        threads=INFERENCE["threads"],
    wildcard_constraints:
        backend="|".join(BACKENDS),
        shard=r"\d+",
    log:
        "results/logs/infer_{backend}_{shard}.log",
    benchmark:
        "results/benchmarks/infer_{backend}_{shard}.tsv"
    threads: timed_inference_threads
    resources:
        mem_mb=2048,
        # The loop backend needs ~0.2-0.4 s per image; everything else takes seconds.
        runtime=lambda wildcards: 15 + (700 // shards_of(wildcards.backend) if wildcards.backend in SLOW else 0),
    conda:
        ENV
    shell:
        "python -m cnnbench.inference run --backend {wildcards.backend} --weights {input.weights} "
        "--test-images {input.test_images} --test-labels {input.test_labels} "
        "--limit {params.limit} --shard {wildcards.shard} --shards {params.shards} "
        "--warmup {params.warmup} --threads {params.threads} "
        "--out {output.csv} --meta {output.meta} > {log} 2>&1"


rule gather_inference:
    input:
        csv=shard_files("csv"),
        meta=shard_files("json"),  # read beside each CSV by the gather step
    output:
        csv=report(
            "results/inference/{backend}.csv",
            caption="../report/inference.rst",
            category="Inference",
            subcategory="{backend}",
        ),
        meta="results/inference/{backend}.json",
    wildcard_constraints:
        backend="|".join(BACKENDS),
    log:
        "results/logs/gather_inference_{backend}.log",
    threads: 1
    resources:
        mem_mb=1024,
        runtime=5,
    conda:
        ENV
    shell:
        "python -m cnnbench.inference gather --out {output.csv} --meta {output.meta} {input.csv} "
        "> {log} 2>&1"


rule throughput:
    input:
        weights=WEIGHTS,
        **TEST_DATA,
    output:
        report("results/throughput.csv", caption="../report/throughput.rst", category="Timing"),
    params:
        backends=" ".join(BACKENDS),
        batch_sizes=" ".join(map(str, INFERENCE["throughput_batch_sizes"])),
        loop_images=INFERENCE["throughput_loop_images"],
        repeats=INFERENCE["throughput_repeats"],
        threads=INFERENCE["threads"],
    log:
        "results/logs/throughput.log",
    benchmark:
        "results/benchmarks/throughput.tsv"
    threads: whole_machine(INFERENCE["threads"])
    resources:
        mem_mb=4096,
        runtime=60,
    conda:
        ENV
    shell:
        "python -m cnnbench.throughput --weights {input.weights} "
        "--test-images {input.test_images} --test-labels {input.test_labels} "
        "--backends {params.backends} --batch-sizes {params.batch_sizes} "
        "--loop-images {params.loop_images} --repeats {params.repeats} "
        "--threads {params.threads} --out {output} > {log} 2>&1"


rule agreement:
    input:
        expand("results/inference/{backend}.csv", backend=BACKENDS),
    output:
        agreement=report(
            "results/agreement.csv", caption="../report/agreement.rst", category="Agreement"
        ),
        accuracy="results/accuracy.csv",
        disagreements="results/disagreements.csv",
    log:
        "results/logs/agreement.log",
    threads: 1
    resources:
        mem_mb=1024,
        runtime=5,
    conda:
        ENV
    shell:
        "python -m cnnbench.agreement --out-agreement {output.agreement} "
        "--out-accuracy {output.accuracy} --out-disagreements {output.disagreements} "
        "{input} > {log} 2>&1"


rule record_environment:
    output:
        "results/environment.json",
    params:
        threads=INFERENCE["threads"],
    log:
        "results/logs/record_environment.log",
    threads: 1
    resources:
        mem_mb=512,
        runtime=5,
    conda:
        ENV
    shell:
        "python -m cnnbench.environment --threads {params.threads} --out {output} > {log} 2>&1"
