# Trainings: in the training's folder (TRAINED), shared by every experiment whose dataset, model,
# train and train_numpy settings are equal (cnnbench.common.sweep).


rule train:
    input:
        sources=step_sources("train"),
        train_images=data_path("train_images"),
        train_labels=data_path("train_labels"),
        **TEST_DATA,
    output:
        checkpoint=f"{TRAINED}/model/checkpoint.pt",
        init=f"{TRAINED}/model/init.npz",
        metrics=report(
            f"{TRAINED}/training/metrics.csv",
            caption="../report/training_metrics.rst",
            category="Training",
        ),
    params:
        **step_params(training_settings("train")),
    log:
        f"{TRAINED}/logs/train.log",
    benchmark:
        f"{TRAINED}/benchmarks/train.tsv"
    threads: training_threads
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
        weights=f"{TRAINED}/{WEIGHTS}",
        # the onnxruntime backend builds the same bytes in memory
        onnx=f"{TRAINED}/model/model.onnx",
        manifest=f"{TRAINED}/{MANIFEST}",
    params:
        **step_params(training_settings("train", dataset_name=True)),
    log:
        f"{TRAINED}/logs/export_weights.log",
    benchmark:
        f"{TRAINED}/benchmarks/export_weights.tsv"
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
            f"{TRAINED}/training_numpy/metrics.csv",
            caption="../report/training_numpy.rst",
            category="Training",
        ),
        steps=report(
            f"{TRAINED}/training_numpy/steps.csv",
            caption="../report/training_numpy_steps.rst",
            category="Training",
        ),
        weights=f"{TRAINED}/{WEIGHTS_NUMPY}",
        manifest=f"{TRAINED}/{MANIFEST_NUMPY}",
        summary=f"{TRAINED}/training_numpy/summary.json",
    params:
        **step_params(training_settings("train", "train_numpy", dataset_name=True)),
    log:
        f"{TRAINED}/logs/train_numpy.log",
    benchmark:
        f"{TRAINED}/benchmarks/train_numpy.tsv"
    threads: numpy_training_threads
    priority: PRIORITY_NUMPY_TRAINING
    resources:
        mem_mb=4096,
        runtime=240,
    conda:
        ENV
    shell:
        step("train_numpy", MIXED_POOLS_ENVIRONMENT)


# The NumPy-trained weights through every fast backend (NUMPY_TRAINED_BACKENDS), then
# agreement: among those backends, and each against the PyTorch-trained reference's torch
# predictions (how often the two trainings classify alike).


rule infer_numpy_trained:
    input:
        sources=lambda wildcards: step_sources("infer", backends=[wildcards.backend]),
        weights=trained(WEIGHTS_NUMPY),
        manifest=trained(MANIFEST_NUMPY),
        **TEST_DATA,
    output:
        csv=f"{EXP}/inference_numpy_trained/{{backend}}_numpy_trained.csv",
        meta=f"{EXP}/inference_numpy_trained/{{backend}}_numpy_trained.json",
    params:
        **step_params(lambda wildcards: infer_settings(wildcards, 0)),
    wildcard_constraints:
        backend="|".join(NUMPY_TRAINED_BACKENDS),
    log:
        f"{EXP}/logs/infer_numpy_trained_{{backend}}.log",
    benchmark:
        f"{EXP}/benchmarks/infer_numpy_trained_{{backend}}.tsv"
    threads: inference_threads
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
        predictions=lambda wildcards: [
            in_experiment(experiment_of(wildcards), "inference/torch.csv"),
            *(
                in_experiment(experiment_of(wildcards), f"inference_numpy_trained/{backend}_numpy_trained.csv")
                for backend in fast_backends_of(wildcards)
            ),
        ],
    output:
        agreement=f"{EXP}/agreement_numpy_trained/agreement.csv",
        accuracy=f"{EXP}/agreement_numpy_trained/accuracy.csv",
        disagreements=f"{EXP}/agreement_numpy_trained/disagreements.csv",
    params:
        **step_params(),
    log:
        f"{EXP}/logs/agreement_numpy_trained.log",
    threads: 1
    resources:
        mem_mb=1024,
        runtime=5,
    conda:
        ENV
    shell:
        step("agreement")
