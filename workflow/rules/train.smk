rule train:
    input:
        train_images=data_path("train_images"),
        train_labels=data_path("train_labels"),
        **TEST_DATA,
    output:
        checkpoint="results/model/checkpoint.pt",
        metrics=report(
            "results/training/metrics.csv",
            caption="../report/training_metrics.rst",
            category="Training",
        ),
    params:
        job=job(TRAIN),
    log:
        "results/logs/train.log",
    benchmark:
        "results/benchmarks/train.tsv"
    threads: threads_for(TRAIN["threads"])
    resources:
        mem_mb=4096,
        runtime=120,
    conda:
        ENV
    shell:
        step("train")


rule export_weights:
    input:
        checkpoint=rules.train.output.checkpoint,
        metrics=rules.train.output.metrics,
        train_images=data_path("train_images"),
        train_labels=data_path("train_labels"),
        **TEST_DATA,
    output:
        weights=WEIGHTS,
        manifest=MANIFEST,
    params:
        job=job({"train": TRAIN, "dataset_name": DATASET["name"]}),
    log:
        "results/logs/export_weights.log",
    benchmark:
        "results/benchmarks/export_weights.tsv"
    threads: threads_for(1)
    resources:
        mem_mb=2048,
        runtime=10,
    conda:
        ENV
    shell:
        step("export")
