rule gradcheck:
    input:
        weights=WEIGHTS,
        **TEST_DATA,
    output:
        "results/gradcheck.csv",
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
