rule report:
    input:
        sources=sources("cnnbench.report.__main__"),
        # every file the report reads (cnnbench.report.inputs), so a changed one reruns it
        metrics=rules.train.output.metrics,
        manifest=rules.export_weights.output.manifest,
        weights=rules.export_weights.output.weights,
        data=[data_path(role) for role in DATASET["files"]],
        gradcheck=rules.gradcheck.output[0],
        inference=expand("results/inference/{backend}.{ext}", backend=BACKENDS, ext=("csv", "json")),
        throughput=rules.throughput.output[0],
        bench_processes=rules.bench_processes.output.json,
        agreement=rules.agreement.output.agreement,
        accuracy=rules.agreement.output.accuracy,
        disagreements=rules.agreement.output.disagreements,
        environment=rules.record_environment.output[0],
        benchmarks=[
            "results/benchmarks/train.tsv",
            "results/benchmarks/export_weights.tsv",
            "results/benchmarks/gradcheck.tsv",
            "results/benchmarks/throughput.tsv",
            "results/benchmarks/bench_processes.tsv",
            *(
                f"results/benchmarks/infer_{backend}_{shard}.tsv"
                for backend in BACKENDS
                for shard in range(shards_of(backend))
            ),
        ],
        worked_example=rules.torch_worked_example.output[0],
        training_numpy_metrics=rules.train_numpy.output.metrics,
        training_numpy_steps=rules.train_numpy.output.steps,
        training_numpy_summary=rules.train_numpy.output.summary,
    output:
        html=report("results/report.html", caption="../report/report_html.rst", category="Report"),
    params:
        # settings: the whole effective config (the page shows it); any change reruns the report
        **step_params(config, untracked=[f"dataset.{MIRRORS}"]),
    log:
        "results/logs/report.log",
    threads: 1
    resources:
        mem_mb=2048,
        runtime=10,
    conda:
        ENV
    shell:
        "python -m cnnbench.report {params.job} > {log} 2>&1"
