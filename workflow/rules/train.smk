rule train:
    input:
        sources=step_sources("train"),
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
        **step_params({"train": TRAIN, "architecture": ARCHITECTURE.to_dict()}),
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
        sources=step_sources("export"),
        checkpoint=rules.train.output.checkpoint,
        metrics=rules.train.output.metrics,
        train_images=data_path("train_images"),
        train_labels=data_path("train_labels"),
        **TEST_DATA,
    output:
        weights=WEIGHTS,
        onnx="results/model/model.onnx",  # the onnxruntime backend builds the same bytes in memory
        manifest=MANIFEST,
    params:
        **step_params(
            {
                "train": TRAIN,
                "dataset_name": DATASET["name"],
                "architecture": ARCHITECTURE.to_dict(),
            }
        ),
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


rule train_numpy:
    input:
        sources=step_sources("train_numpy"),
        train_images=data_path("train_images"),
        train_labels=data_path("train_labels"),
        **TEST_DATA,
        init=rules.train.output.init,
    output:
        metrics=report(
            "results/training_numpy/metrics.csv",
            caption="../report/training_numpy.rst",
            category="Training",
        ),
        steps=report(
            "results/training_numpy/steps.csv",
            caption="../report/training_numpy_steps.rst",
            category="Training",
        ),
        weights=WEIGHTS_NUMPY,
        manifest=MANIFEST_NUMPY,
        summary="results/training_numpy/summary.json",
    params:
        **step_params(
            {
                "train": TRAIN,
                "train_numpy": TRAIN_NUMPY,
                "dataset_name": DATASET["name"],
                "architecture": ARCHITECTURE.to_dict(),
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
        step("train_numpy")


# The NumPy-trained weights through every fast backend (the loop backend, im2col's exact twin,
# would take about an hour more), then agreement: among those backends, and each against the
# PyTorch-trained reference's torch predictions (how often the two trainings classify alike).
NUMPY_TRAINED_BACKENDS = [backend for backend in BACKENDS if backend not in SLOW]


rule infer_numpy_trained:
    input:
        sources=lambda wildcards: step_sources("infer", backends=[wildcards.backend]),
        weights=WEIGHTS_NUMPY,
        manifest=MANIFEST_NUMPY,
        **TEST_DATA,
    output:
        csv="results/inference_numpy_trained/{backend}_numpy_trained.csv",
        meta="results/inference_numpy_trained/{backend}_numpy_trained.json",
    params:
        **step_params(lambda wildcards: infer_settings(wildcards.backend, 0)),
    wildcard_constraints:
        backend="|".join(NUMPY_TRAINED_BACKENDS),
    log:
        "results/logs/infer_numpy_trained_{backend}.log",
    threads: threads_for(INFERENCE["threads"])
    resources:
        mem_mb=2048,
        runtime=15,
    conda:
        ENV
    shell:
        step("infer")


rule agreement_numpy_trained:
    input:
        sources=step_sources("agreement"),
        predictions=[
            "results/inference/torch.csv",
            *expand(
                "results/inference_numpy_trained/{backend}_numpy_trained.csv",
                backend=NUMPY_TRAINED_BACKENDS,
            ),
        ],
    output:
        agreement="results/agreement_numpy_trained/agreement.csv",
        accuracy="results/agreement_numpy_trained/accuracy.csv",
        disagreements="results/agreement_numpy_trained/disagreements.csv",
    params:
        **step_params(),
    log:
        "results/logs/agreement_numpy_trained.log",
    threads: 1
    resources:
        mem_mb=1024,
        runtime=5,
    conda:
        ENV
    shell:
        step("agreement")
