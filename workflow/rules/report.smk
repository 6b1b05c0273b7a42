# Jobs of the benchmarked rules with wildcards, as the run makes them (each from the same values
# its consumers use); every other benchmarked rule runs once.
BENCHMARKED_JOBS = {
    "infer_shard": [
        {"backend": backend, "shard": shard}
        for backend in BACKENDS
        for shard in range(shards_of(backend))
    ],
    "infer_numpy_trained": [{"backend": backend} for backend in NUMPY_TRAINED_BACKENDS],
}


def every_benchmark():
    """Every benchmark file the run writes: each rule's own `benchmark:` path, once per job. A
    benchmarked rule with wildcards must name its jobs in BENCHMARKED_JOBS (else the workflow
    stops here), so no rule's wall time silently misses the report's table and total."""
    files = []
    for rule in workflow.rules:
        if not rule.benchmark:
            continue
        pattern = getattr(rules, rule.name).benchmark
        if rule.wildcard_names and rule.name not in BENCHMARKED_JOBS:
            raise WorkflowError(
                f"rule {rule.name} is benchmarked per {sorted(rule.wildcard_names)}: "
                "name its jobs in BENCHMARKED_JOBS (workflow/rules/report.smk)"
            )
        for wildcards in BENCHMARKED_JOBS.get(rule.name, [{}]):
            files.append(pattern.format(**wildcards))
    return files


rule report:
    input:
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
        benchmarks=every_benchmark(),
        worked_example=rules.torch_worked_example.output[0],
        training_numpy_metrics=rules.train_numpy.output.metrics,
        training_numpy_steps=rules.train_numpy.output.steps,
        training_numpy_summary=rules.train_numpy.output.summary,
    output:
        html=report("results/report.html", caption="../report/report_html.rst", category="Report"),
    params:
        # settings: the whole effective config (the page shows it)
        job=job(config),
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
