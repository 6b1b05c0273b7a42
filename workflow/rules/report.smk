rule report:
    input:
        unpack(lambda wildcards: report_files(experiment_of(wildcards))),
        sources=sources("cnnbench.report.__main__"),
    output:
        html=report(f"{EXP}/report.html", caption="../report/report_html.rst", category="Report"),
    params:
        # settings: the experiment's whole config (the page shows it); any change reruns the report
        **step_params(config_of, untracked=[f"dataset.{MIRRORS}"]),
    log:
        f"{EXP}/logs/report.log",
    threads: 1
    resources:
        mem_mb=2048,
        runtime=10,
    conda:
        ENV
    shell:
        "python -m cnnbench.report {params.job} > {log} 2>&1"


if SWEEP:
    # A sweep: results/report.html compares the experiments and links each one's full report;
    # results/experiments.csv holds its numbers (cnnbench.report.compare).

    localrules:
        compare,

    rule compare:
        input:
            unpack(compare_inputs),
            sources=sources("cnnbench.report.compare"),
        output:
            html=report("results/report.html", caption="../report/report_html.rst", category="Report"),
            csv="results/experiments.csv",
        params:
            # every experiment's config: the columns are the settings that differ
            **step_params(
                {"experiments": RUNS},
                untracked=[f"experiments.{name}.dataset.{MIRRORS}" for name in RUNS],
            ),
        log:
            "results/logs/compare.log",
        threads: 1
        resources:
            mem_mb=2048,
            runtime=10,
        conda:
            ENV
        shell:
            "python -m cnnbench.report.compare {params.job} > {log} 2>&1"
