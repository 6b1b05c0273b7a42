"""Datasets by name and named experiments: presets, merging over the base config, validation."""

import copy
import re
from pathlib import Path

import pytest
import yaml

from cnnbench import datasets
from cnnbench.common import config as cnnbench_config
from cnnbench.common import sweep

REPO = Path(__file__).resolve().parents[1]
SCHEMA = cnnbench_config.load_schema(REPO / "workflow" / "schemas" / "config.schema.yaml")
# the shipped sweep's experiments (examples/sweep.yaml)
SWEEP = yaml.safe_load((REPO / "examples" / "sweep.yaml").read_text())["experiments"]
LENET5 = SWEEP["lenet5"]["model"]


@pytest.fixture
def config():
    return yaml.safe_load((REPO / "config.yaml").read_text())


# ---------------------------------------------------------------------------- dataset presets

# torchvision/datasets/mnist.py: MNIST, FashionMNIST and KMNIST .resources (publisher md5s)
TORCHVISION_MD5 = {
    "mnist": ["f68b3c2dcbeaaa9fbdd348bbdeb94873", "d53e105ee54ea40749a09fcbcd1e9432"],
    "fashion-mnist": ["8d4fb7e6c68d591d4c3dfef9ec88bf0d", "25c81989df183df01b3e8a0aad5dffbe"],
    "kmnist": ["bdb82020997e1d708af4cf47b453dcf7", "e144d726b3acfaa3e44228e80efcd344"],
}


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist", "kmnist", "Fashion-MNIST"])
def test_a_preset_by_name_fills_files_checksums_and_mirrors(config, name):
    config["dataset"] = {"name": name}
    cnnbench_config.resolve(config)
    dataset = config["dataset"]
    assert dataset["name"] == name  # as written: the report shows it
    md5 = [dataset["files"][role]["md5"] for role in ("train_images", "train_labels")]
    assert md5 == TORCHVISION_MD5[name.lower()]
    assert dataset["image_size"] == [28, 28] and dataset["classes"] == 10
    assert dataset["mirrors"] == datasets.PRESETS[name.lower()]["mirrors"]
    cnnbench_config.check(config)
    assert not list(_errors(config))


def test_only_mnist_carries_sizes(config):
    """Sizes only where they can be cited; without one, Content-Length bounds a download."""
    for name, preset in datasets.PRESETS.items():
        sizes = [spec.get("size") for spec in preset["files"].values()]
        assert all(sizes) if name == "mnist" else not any(sizes), name


def test_a_custom_overlay_keeps_nothing_of_the_preset_files(config):
    """The issue's report: Fashion-MNIST's files with md5 and sha256 but no size over MNIST
    used to keep MNIST's size (9912422) through the config merge."""
    fashion = {"file": "train-images-idx3-ubyte.gz", "md5": "8d4fb7e6c68d591d4c3dfef9ec88bf0d"}
    files = {role: {**fashion, "file": f"{role}.gz"} for role in datasets.PRESETS["mnist"]["files"]}
    config["dataset"] = {"name": "mnist", "files": files}
    cnnbench_config.resolve(config)
    assert config["dataset"]["files"] == files  # no size, no sha256 merged in
    assert config["dataset"]["mirrors"] == datasets.PRESETS["mnist"]["mirrors"]
    config["dataset"] = {"name": "mnist", "mirrors": ["file:///tmp/mnist/"]}
    cnnbench_config.resolve(config)
    assert config["dataset"]["files"] == datasets.PRESETS["mnist"]["files"]
    assert config["dataset"]["mirrors"] == ["file:///tmp/mnist/"]


def test_a_custom_name_needs_its_own_files_and_mirrors(config):
    config["dataset"] = {"name": "emnist"}
    with pytest.raises(cnnbench_config.ConfigError) as caught:
        cnnbench_config.resolve(config)
    assert str(caught.value) == (
        "dataset.name 'emnist' is no preset (mnist, fashion-mnist, kmnist): a custom dataset "
        "gives dataset.files and dataset.mirrors itself"
    )
    files = copy.deepcopy(datasets.PRESETS["kmnist"]["files"])
    config["dataset"] = {"name": "my-kmnist", "files": files, "mirrors": ["file:///k/"]}
    cnnbench_config.resolve(config)
    assert config["dataset"]["classes"] == 10 and not list(_errors(config))


# ---------------------------------------------------------------------------- experiments


def _errors(config):
    import jsonschema

    return jsonschema.Draft202012Validator(SCHEMA).iter_errors(config)


def test_no_experiments_is_one_experiment(config):
    assert config["experiments"] == {}
    assert cnnbench_config.experiments(config, SCHEMA) == {}
    del config["experiments"]
    assert cnnbench_config.experiments(config, SCHEMA) == {}


def test_experiments_merge_over_the_base_config(config):
    config["dataset"]["mirrors"] = ["file:///local/mnist/"]
    config["experiments"] = {
        "seed": None,
        "lenet5": {"model": LENET5, "train": {"epochs": 2}},
        "fashion": {"dataset": {"name": "fashion-mnist"}},
        "typed": {"inference": {"limit": "100"}},  # a --config string, typed by the schema
    }
    merged = cnnbench_config.experiments(config, SCHEMA)
    assert list(merged) == ["seed", "lenet5", "fashion", "typed"]  # the given order
    base = {key: value for key, value in config.items() if key != "experiments"}
    cnnbench_config.resolve(base)
    assert merged["seed"] == base
    assert merged["lenet5"]["model"] == LENET5
    assert merged["lenet5"]["train"] == {**base["train"], "epochs": 2}  # key by key
    # a dataset section replaces the base's whole: the local MNIST mirror is not Fashion's
    assert merged["fashion"]["dataset"] == {
        "name": "fashion-mnist",
        **datasets.preset("fashion-mnist"),
    }
    assert merged["fashion"]["dataset"]["mirrors"] == datasets.PRESETS["fashion-mnist"]["mirrors"]
    assert merged["typed"]["inference"]["limit"] == 100
    assert "experiments" not in merged["seed"]
    assert config["experiments"]["lenet5"] == {"model": LENET5, "train": {"epochs": 2}}  # untouched


@pytest.mark.parametrize(
    ("experiment", "message"),
    [
        (
            {"train": {"epochs": 0}},
            "experiment 'bad': config train.epochs: 0 is less than the minimum of 1",
        ),
        (
            {"model": {"layers": [{"conv": 8, "kernel": 3, "stride": 0}]}},
            "experiment 'bad': config model.layers[0]",
        ),
        (
            {"train": {"epocs": 3}},
            "experiment 'bad': config train: Additional properties are not allowed ('epocs'",
        ),
        ({"dataset": {"name": "emnist"}}, "experiment 'bad': dataset.name 'emnist' is no preset"),
        ({"train": {"lr": float("nan")}}, "experiment 'bad': config train.lr is nan"),
    ],
)
def test_a_bad_experiment_is_named_with_its_key(config, experiment, message):
    config["experiments"] = {"good": {}, "bad": experiment}
    with pytest.raises(cnnbench_config.ConfigError) as caught:
        cnnbench_config.experiments(config, SCHEMA)
    assert str(caught.value).startswith(message), caught.value
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("experiments", "complaint"),
    [
        ({"a/b": {}}, "does not match"),
        ({"../up": {}}, "does not match"),
        ({"": {}}, "does not match"),
        ({"x": {"modle": {}}}, "Additional properties are not allowed ('modle'"),
        ({"x": {"experiments": {}}}, "Additional properties are not allowed ('experiments'"),
    ],
)
def test_experiment_names_are_plain_and_keys_known(config, experiments, complaint):
    config["experiments"] = experiments
    cnnbench_config.resolve(config)
    messages = [error.message for error in _errors(config)]
    assert any(complaint in message for message in messages), messages


# ---------------------------------------------------------------------------- shared work


def test_experiments_differing_only_after_training_share_it(config):
    config["experiments"] = {
        "seed": {},
        "fewer-images": {"inference": {"limit": 100, "backends": ["torch"]}},
        "bench": {"bench": {"processes": 2}, "gradcheck": {"samples": 3}},
        "local": {"dataset": {"name": "mnist", "mirrors": ["file:///local/"]}},
        "lenet5": {"model": LENET5},
        "lr": {"train": {"lr": 0.01}},
        "numpy64": {"train_numpy": {"dtype": "float64"}},
        "fashion": {"dataset": {"name": "fashion-mnist"}},
    }
    experiments = cnnbench_config.experiments(config, SCHEMA)
    keys = sweep.trainings_of(experiments)
    shared = {keys[name] for name in ("seed", "fewer-images", "bench", "local")}
    assert len(shared) == 1
    others = [keys[name] for name in ("lenet5", "lr", "numpy64", "fashion")]
    assert len({*others, *shared}) == 5
    assert re.fullmatch(r"mnist-[0-9a-f]{10}", keys["seed"])  # readable, never a hash alone
    assert keys["fashion"].startswith("fashion-mnist-")
    datasets_used = sweep.datasets_of(experiments)
    assert list(datasets_used) == ["mnist", "fashion-mnist"]  # one download each


def test_one_dataset_name_with_two_sets_of_files_is_refused(config):
    files = copy.deepcopy(datasets.PRESETS["kmnist"]["files"])
    config["experiments"] = {
        "a": {},
        "b": {"dataset": {"name": "mnist", "files": files}},
    }
    experiments = cnnbench_config.experiments(config, SCHEMA)
    with pytest.raises(sweep.SweepError) as caught:
        sweep.datasets_of(experiments)
    assert str(caught.value) == (
        "experiments 'a' and 'b' both name their dataset 'mnist' but give different files: "
        "give each dataset its own name"
    )


@pytest.mark.parametrize(
    ("name", "key"), [("MNIST", "mnist"), ("My data/v2", "my-data-v2"), ("../x", "x")]
)
def test_dataset_folders_are_plain(name, key):
    assert sweep.dataset_key({"name": name}) == key


def test_images_per_backend_count_both_trainings_but_the_loop_backend(config):
    files = copy.deepcopy(datasets.PRESETS["mnist"]["files"])
    config["experiments"] = {
        "all": {},
        "few": {"inference": {"limit": 100, "backends": ["torch", "numpy_loops"]}},
    }
    experiments = cnnbench_config.experiments(config, SCHEMA)
    images = sweep.images_per_backend(experiments, {"numpy_loops"})
    assert images["torch"] == 2 * 10_000 + 2 * 100
    assert images["numpy_loops"] == 10_000 + 100
    assert images["onnxruntime"] == 2 * 10_000
    custom = {"name": "mine", "files": files, "mirrors": ["file:///m/"]}
    config["experiments"]["mine"] = {"dataset": custom}
    experiments = cnnbench_config.experiments(config, SCHEMA)
    assert sweep.images_per_backend(experiments, {"numpy_loops"})["onnxruntime"] is None
    config["experiments"]["mine"]["inference"] = {"limit": 7, "backends": ["torch"]}
    experiments = cnnbench_config.experiments(config, SCHEMA)
    assert sweep.images_per_backend(experiments, set())["torch"] == 2 * (10_000 + 100 + 7)


# ---------------------------------------------------------------------------- the workflow


def test_a_dry_run_says_the_cost_of_the_shipped_sweep(tmp_path, run_snakemake):
    overlay = yaml.safe_load((REPO / "examples" / "sweep.yaml").read_text())
    result = run_snakemake(tmp_path / "run", overlay, "-n", "--cores", "2", timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    line = re.search(r"cnnbench: 3 experiments \((.*?)\), .*", output)
    assert sorted(line[1].split(", ")) == ["lenet5", "seed", "wide"]  # the overlay's order
    line = line[0]
    total = int(re.search(r"^total\s+(\d+)$", output, re.MULTILINE)[1])
    assert f"1 dataset download, 3 trainings, {total} jobs from scratch" in line
    # the example's 1 000 test images of each experiment, twice where NumPy-trained weights run
    assert overlay["inference"]["limit"] == 1000
    assert line.endswith(
        "torch 6,000, onnxruntime 6,000, numpy_im2col 6,000, numba_loops 6,000, numpy_loops 3,000."
    )
    for name in ("seed", "lenet5", "wide"):
        assert f"results/experiments/{name}/report.html" in output
    assert "results/experiments.csv" in output
    assert not (tmp_path / "run" / "results").exists()


def test_a_bad_experiment_stops_snakemake_naming_it(tmp_path, run_snakemake):
    overlay = {
        "experiments": {"seed": {}, "tiny": {"model": {"layers": [{"conv": 4, "kernel": 40}]}}}
    }
    result = run_snakemake(tmp_path / "run", overlay, "-n", "--cores", "1", timeout=300)
    assert result.returncode != 0
    assert "Error validating config file: experiment 'tiny': model.layers[0]" in (
        result.stdout + result.stderr
    )
    assert not (tmp_path / "run" / "results").exists()
