# Timed work. Every timed job declares threads through threads_for(), so even with --cores above
# the machine's core count no more threads are busy than there are cores while a clock runs.
# The short timed jobs (the fast backends, throughput) take the whole machine: run one at a time,
# alone, their numbers compare cleanly. The loop backend's shards share it, as they must.


rule infer_shard:
    input:
        sources=lambda wildcards: step_sources("infer", backends=[wildcards.backend]),
        weights=trained(WEIGHTS),
        manifest=trained(MANIFEST),
        **TEST_DATA,
    output:
        # Gathered into inference/{backend}.csv. Kept, not temp(): a missing shard would be
        # predicted again whenever its gather reruns.
        csv=f"{EXP}/inference/shards/{{backend}}/{{shard}}.csv",
        meta=f"{EXP}/inference/shards/{{backend}}/{{shard}}.json",
    params:
        **step_params(lambda wildcards: infer_settings(wildcards, int(wildcards.shard))),
    wildcard_constraints:
        backend="|".join(BACKENDS),
        shard=r"\d+",
    log:
        f"{EXP}/logs/infer_{{backend}}_{{shard}}.log",
    benchmark:
        f"{EXP}/benchmarks/infer_{{backend}}_{{shard}}.tsv"
    threads: timed_inference_threads
    priority: shard_priority
    resources:
        mem_mb=2048,
        # The loop backend needs ~0.2-0.4 s per image; everything else takes seconds.
        runtime=lambda wildcards: 15 + (700 // shards_of(wildcards) if wildcards.backend in SLOW else 0),
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
            f"{EXP}/inference/{{backend}}.csv",
            caption="../report/inference.rst",
            category="Inference",
            subcategory="{backend}",
        ),
        meta=f"{EXP}/inference/{{backend}}.json",
    params:
        **step_params(),
    wildcard_constraints:
        backend="|".join(BACKENDS),
    log:
        f"{EXP}/logs/gather_inference_{{backend}}.log",
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
        sources=lambda wildcards: step_sources("throughput", backends=backends_of(wildcards)),
        weights=trained(WEIGHTS),
        manifest=trained(MANIFEST),
        **TEST_DATA,
    output:
        csv=report(f"{EXP}/throughput.csv", caption="../report/throughput.rst", category="Timing"),
    params:
        # inference's settings but those of single predictions
        **step_params(
            lambda wildcards: without(
                config_of(wildcards)["inference"], ["limit", "warmup", "shards"]
            )
        ),
    log:
        f"{EXP}/logs/throughput.log",
    benchmark:
        f"{EXP}/benchmarks/throughput.tsv"
    threads: timed_alone
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
        predictions=predictions(),
    output:
        agreement=report(
            f"{EXP}/agreement.csv", caption="../report/agreement.rst", category="Agreement"
        ),
        accuracy=f"{EXP}/accuracy.csv",
        disagreements=f"{EXP}/disagreements.csv",
    params:
        **step_params(),
    log:
        f"{EXP}/logs/agreement.log",
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
        json=f"{EXP}/environment.json",
    params:
        **step_params(lambda wildcards: {"threads": config_of(wildcards)["inference"]["threads"]}),
    log:
        f"{EXP}/logs/record_environment.log",
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
        sources=lambda wildcards: step_sources("bench_processes", backends=backends_of(wildcards)),
        weights=trained(WEIGHTS),
        manifest=trained(MANIFEST),
        **TEST_DATA,
    output:
        json=f"{EXP}/bench_processes.json",
    params:
        **step_params(bench_settings),
    log:
        f"{EXP}/logs/bench_processes.log",
    benchmark:
        f"{EXP}/benchmarks/bench_processes.tsv"
    # a short timed job: it runs alone, its processes one after another
    threads: timed_alone
    resources:
        mem_mb=4096,
        runtime=15,
    conda:
        ENV
    shell:
        step("bench_processes")


rule machine_limits:
    input:
        sources=step_sources("machine"),
    output:
        json="results/machine.json",
    params:
        **step_params(),
    log:
        "results/logs/machine_limits.log",
    benchmark:
        "results/benchmarks/machine_limits.tsv"
    # timed: it runs alone (one thread measuring the machine's single-thread limits)
    threads: whole_machine(1)
    resources:
        mem_mb=1024,
        runtime=5,
    conda:
        ENV
    shell:
        step("machine")


rule layer_times:
    input:
        sources=lambda wildcards: step_sources("layer_times", backends=backends_of(wildcards)),
        weights=trained(WEIGHTS),
        manifest=trained(MANIFEST),
        **TEST_DATA,
    output:
        csv=f"{EXP}/layers.csv",
    params:
        **step_params(bench_settings),
    log:
        f"{EXP}/logs/layer_times.log",
    benchmark:
        f"{EXP}/benchmarks/layer_times.tsv"
    # a short timed job: it runs alone
    threads: timed_alone
    resources:
        mem_mb=4096,
        runtime=15,
    conda:
        ENV
    shell:
        step("layer_times")
