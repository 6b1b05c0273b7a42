rule report:
    input:
        metrics=rules.train.output.metrics,
        manifest=rules.export_weights.output.manifest,
        gradcheck=rules.gradcheck.output[0],
        inference=expand("results/inference/{backend}.{ext}", backend=BACKENDS, ext=("csv", "json")),
        throughput=rules.throughput.output[0],
        agreement=rules.agreement.output,
        environment=rules.record_environment.output[0],
        benchmarks=[
            "results/benchmarks/train.tsv",
            "results/benchmarks/export_weights.tsv",
            "results/benchmarks/gradcheck.tsv",
            "results/benchmarks/throughput.tsv",
            *(
                f"results/benchmarks/infer_{backend}_{shard}.tsv"
                for backend in BACKENDS
                for shard in range(shards_of(backend))
            ),
        ],
        test_images=TEST_DATA["test_images"],
        worked_example=rules.torch_worked_example.output[0],
    output:
        report("results/report.html", caption="../report/report_html.rst", category="Report"),
    params:
        config=shlex.quote(json.dumps(config, sort_keys=True)),
    log:
        "results/logs/report.log",
    threads: 1
    resources:
        mem_mb=2048,
        runtime=10,
    conda:
        ENV
    shell:
        "python -m cnnbench.report --results results --config-json {params.config} "
        "--out {output} > {log} 2>&1"
