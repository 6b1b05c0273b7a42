rule gradcheck:
    input:
        weights=WEIGHTS,
        **TEST_DATA,
    output:
        report("results/gradcheck.csv", caption="../report/gradcheck.rst", category="Gradient checks"),
    params:
        batch_size=GRADCHECK["batch_size"],
        samples=GRADCHECK["samples"],
        seed=GRADCHECK["seed"],
    log:
        "results/logs/gradcheck.log",
    benchmark:
        "results/benchmarks/gradcheck.tsv"
    threads: threads_for(1)
    resources:
        mem_mb=2048,
        runtime=30,
    conda:
        ENV
    shell:
        "python -m cnnbench.gradcheck --weights {input.weights} --test-images {input.test_images} "
        "--test-labels {input.test_labels} --batch-size {params.batch_size} "
        "--samples {params.samples} --seed {params.seed} --threads 1 --out {output} > {log} 2>&1"


rule torch_worked_example:
    output:
        "results/worked_example_torch.json",
    log:
        "results/logs/torch_worked_example.log",
    threads: 1
    resources:
        mem_mb=1024,
        runtime=5,
    conda:
        ENV
    shell:
        "python -m cnnbench.worked_example --out {output} > {log} 2>&1"
