# Timed work. Every timed job declares threads through threads_for(), so even with --cores above
# the machine's core count no more threads are busy than there are cores while a clock runs.
# The short timed jobs (the fast backends, throughput) take the whole machine: run one at a time,
# alone, their numbers compare cleanly. The loop backend's shards share it, as they must.


rule infer_shard:
    input:
        sources=lambda wildcards: step_sources("infer", backends=[wildcards.backend]),
        weights=WEIGHTS,
        manifest=MANIFEST,
        **TEST_DATA,
    output:
        # Gathered into results/inference/{backend}.csv. Kept, not temp(): a missing shard
        # would be predicted again whenever its gather reruns.
        csv="results/inference/shards/{backend}/{shard}.csv",
        meta="results/inference/shards/{backend}/{shard}.json",
    params:
        **step_params(lambda wildcards: infer_settings(wildcards.backend, int(wildcards.shard))),
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
        step("infer")


rule gather_inference:
    input:
        sources=step_sources("gather"),
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
    params:
        **step_params(),
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
        step("gather")


rule throughput:
    input:
        sources=step_sources("throughput", backends=BACKENDS),
        weights=WEIGHTS,
        manifest=MANIFEST,
        **TEST_DATA,
    output:
        csv=report("results/throughput.csv", caption="../report/throughput.rst", category="Timing"),
    params:
        # inference's settings but those of single predictions
        **step_params(without(INFERENCE, ["limit", "warmup", "shards"])),
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
        step("throughput")


rule agreement:
    input:
        sources=step_sources("agreement"),
        predictions=expand("results/inference/{backend}.csv", backend=BACKENDS),
    output:
        agreement=report(
            "results/agreement.csv", caption="../report/agreement.rst", category="Agreement"
        ),
        accuracy="results/accuracy.csv",
        disagreements="results/disagreements.csv",
    params:
        **step_params(),
    log:
        "results/logs/agreement.log",
    threads: 1
    resources:
        mem_mb=1024,
        runtime=5,
    conda:
        ENV
    shell:
        step("agreement")


rule record_environment:
    input:
        sources=step_sources("environment"),
    output:
        json="results/environment.json",
    params:
        **step_params({"threads": INFERENCE["threads"]}),
    log:
        "results/logs/record_environment.log",
    threads: 1
    resources:
        mem_mb=512,
        runtime=5,
    conda:
        ENV
    shell:
        step("environment")


rule bench_processes:
    input:
        sources=step_sources("bench_processes", backends=BACKENDS),
        weights=WEIGHTS,
        manifest=MANIFEST,
        **TEST_DATA,
    output:
        json="results/bench_processes.json",
    params:
        # the bench's settings; backends and threads are the timed inference jobs'
        **step_params(BENCH | {"backends": BACKENDS, "threads": INFERENCE["threads"]}),
    log:
        "results/logs/bench_processes.log",
    benchmark:
        "results/benchmarks/bench_processes.tsv"
    # a short timed job: it runs alone, its processes one after another
    threads: whole_machine(INFERENCE["threads"])
    resources:
        mem_mb=4096,
        runtime=15,
    conda:
        ENV
    shell:
        step("bench_processes")
