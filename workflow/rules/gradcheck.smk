rule gradcheck:
    input:
        sources=step_sources("gradcheck"),
        weights=trained(WEIGHTS),
        manifest=trained(MANIFEST),
        **TEST_DATA,
    output:
        csv=report(
            f"{EXP}/gradcheck.csv", caption="../report/gradcheck.rst", category="Gradient checks"
        ),
    params:
        **step_params(section("gradcheck")),
    log:
        f"{EXP}/logs/gradcheck.log",
    benchmark:
        f"{EXP}/benchmarks/gradcheck.tsv"
    threads: threads_for(1)
    resources:
        mem_mb=2048,
        runtime=30,
    conda:
        ENV
    shell:
        step("gradcheck")


# The seed's worked example: the same for every experiment.
rule torch_worked_example:
    input:
        sources=step_sources("worked_example"),
    output:
        json="results/worked_example_torch.json",
    params:
        **step_params(),
    log:
        "results/logs/torch_worked_example.log",
    threads: 1
    resources:
        mem_mb=1024,
        runtime=5,
    conda:
        ENV
    shell:
        step("worked_example")
