# cnnbench: train a small CNN on MNIST, run it through hand-written backends, check every
# gradient, and render results/report.html.  Run: snakemake --cores 4   (see README.md)

from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config.yaml"


report: "workflow/report/workflow.rst"


validate(config, "workflow/schemas/config.schema.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/gradcheck.smk"
include: "workflow/rules/inference.smk"
include: "workflow/rules/report.smk"


localrules:
    all,
    download,
    gather_inference,
    agreement,
    agreement_numpy_trained,
    report,
    torch_worked_example,


rule all:
    default_target: True
    input:
        "results/report.html",
        # The NumPy-trained weights through the backends (workflow/rules/train.smk).
        rules.agreement_numpy_trained.output,
