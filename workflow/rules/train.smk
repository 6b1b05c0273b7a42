rule train:
    input:
        train_images=data_path("train_images"),
        train_labels=data_path("train_labels"),
        **TEST_DATA,
    output:
        checkpoint="results/model/checkpoint.pt",
        init="results/model/init.npz",
        metrics=report(
            "results/training/metrics.csv",
            caption="../report/training_metrics.rst",
            category="Training",
        ),
    params:
        epochs=TRAIN["epochs"],
        batch_size=TRAIN["batch_size"],
        lr=TRAIN["lr"],
        seed=TRAIN["seed"],
        device=TRAIN["device"],
        limit=optional(TRAIN["limit"]),
        threads=TRAIN["threads"],
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
        "python -m cnnbench.train --train-images {input.train_images} "
        "--train-labels {input.train_labels} --test-images {input.test_images} "
        "--test-labels {input.test_labels} --epochs {params.epochs} "
        "--batch-size {params.batch_size} --lr {params.lr} --seed {params.seed} "
        "--device {params.device} --limit {params.limit} --threads {params.threads} "
        "--checkpoint {output.checkpoint} --metrics {output.metrics} --init {output.init} "
        "> {log} 2>&1"


rule export_weights:
    input:
        checkpoint=rules.train.output.checkpoint,
        metrics=rules.train.output.metrics,
        train_images=data_path("train_images"),
        train_labels=data_path("train_labels"),
        **TEST_DATA,
    output:
        weights=WEIGHTS,
        manifest="results/model/manifest.json",
    params:
        train_config=as_json_arg(TRAIN),
        dataset_name=shlex.quote(DATASET["name"]),
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
        "python -m cnnbench.export --checkpoint {input.checkpoint} --metrics {input.metrics} "
        "--train-config {params.train_config} --dataset-name {params.dataset_name} "
        "--data train_images={input.train_images} train_labels={input.train_labels} "
        "test_images={input.test_images} test_labels={input.test_labels} "
        "--weights {output.weights} --manifest {output.manifest} > {log} 2>&1"


rule train_numpy:
    input:
        train_images=data_path("train_images"),
        train_labels=data_path("train_labels"),
        **TEST_DATA,
        init=rules.train.output.init,
    output:
        metrics="results/training_numpy/metrics.csv",
        steps="results/training_numpy/steps.csv",
        weights="results/model/weights_numpy.npz",
        manifest="results/model/manifest_numpy.json",
    params:
        job=lambda wildcards, input, output: as_json_arg(
            {
                "input": dict(input.items()),
                "output": dict(output.items()),
                "settings": {
                    "train": TRAIN,
                    "train_numpy": config["train_numpy"],
                    "dataset_name": DATASET["name"],
                },
            }
        ),
    log:
        "results/logs/train_numpy.log",
    benchmark:
        "results/benchmarks/train_numpy.tsv"
    threads: threads_for(TRAIN["threads"])
    resources:
        mem_mb=4096,
        runtime=240,
    conda:
        ENV
    shell:
        "python -m cnnbench.steps.train_numpy {params.job} > {log} 2>&1"
