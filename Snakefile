# cnnbench: train a small CNN on MNIST, run it through hand-written backends, check every
# gradient, and render results/report.html.  Run: snakemake --cores 4   (see README.md)

import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version, validate

# Rules and this file import the project's library from src/ (see workflow/rules/common.smk).
sys.path.insert(0, str(Path(workflow.basedir) / "src"))
import cnnbench.common.config  # noqa: E402
import cnnbench.common.sweep  # noqa: E402
import cnnbench.network.architecture  # noqa: E402

min_version("9.0")


configfile: "config.yaml"


report: "workflow/report/workflow.rst"


# Nested --config values arrive as strings ("inference={limit: 1000}"): type them by the schema,
# complete the dataset from its preset, validate, then check what the schema cannot express
# (finite numbers, distinct file names) and build each network. Every experiment's config (the
# base with its overrides, README "Experiments") is validated likewise, naming the experiment.
SCHEMA = str(Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml")
_schema = cnnbench.common.config.load_schema(SCHEMA)
cnnbench.common.config.prepare(config, _schema)
try:
    cnnbench.common.config.resolve(config)
except cnnbench.common.config.ConfigError as error:
    raise WorkflowError(f"Error validating config file: {error}") from None
validate(config, SCHEMA)
try:
    cnnbench.common.config.check(config)
    # The experiments by name; without any, one: the config itself (at today's paths).
    EXPERIMENTS = cnnbench.common.config.experiments(config, _schema)
    RUNS = EXPERIMENTS or {"": {k: v for k, v in config.items() if k != "experiments"}}
    for _name, _run in RUNS.items():
        try:  # a network that cannot be built (a layer with no output pixel) stops here
            cnnbench.network.architecture.from_config(_run)
        except cnnbench.network.architecture.ArchitectureError as error:
            raise type(error)(f"experiment {_name!r}: {error}" if _name else str(error)) from None
    # Shared work: one download per dataset, one training per set of training settings.
    DATASETS = cnnbench.common.sweep.datasets_of(RUNS)
    TRAININGS = cnnbench.common.sweep.trainings_of(RUNS)
except (
    cnnbench.common.config.ConfigError,
    cnnbench.common.sweep.SweepError,
    cnnbench.network.architecture.ArchitectureError,
) as error:
    raise WorkflowError(f"Error validating config file: {error}") from None


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
        # one experiment: its report; a sweep: the comparison, which needs every report
        "results/report.html",
        # The NumPy-trained weights through the backends (workflow/rules/train.smk).
        per_experiment(rules.agreement_numpy_trained.output.agreement),
