"""config.yaml and its schema: the defaults validate, bad values are refused naming the key."""

import copy
from pathlib import Path

import pytest
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from cnnbench import backends

REPO = Path(__file__).resolve().parents[1]
SCHEMA = str(REPO / "workflow" / "schemas" / "config.schema.yaml")


@pytest.fixture
def config():
    return yaml.safe_load((REPO / "config.yaml").read_text())


def test_default_config_is_valid_and_complete(config):
    validate(copy.deepcopy(config), SCHEMA)
    assert config["train"] == {
        "epochs": 5,
        "batch_size": 128,
        "lr": 0.001,
        "seed": 0,
        "device": "auto",
        "limit": None,
        "threads": 2,
    }
    assert config["train_numpy"] == {"dtype": "float32", "check_steps": 200}
    assert config["inference"]["limit"] is None and config["inference"]["threads"] == 1
    # every backend, the production peer included, runs by default
    assert set(config["inference"]["backends"]) == set(backends.NAMES)
    assert "onnxruntime" in config["inference"]["backends"]
    # modest: the bench_processes rule takes well under two minutes on a quiet 2-core machine
    assert config["bench"] == {
        "processes": 3,
        "rounds": 3,
        "images": 50,
        "batch_size": 250,
        "loop_images": 2,
    }


def test_schema_knows_every_backend():
    schema = yaml.safe_load(Path(SCHEMA).read_text())
    backend_items = schema["properties"]["inference"]["properties"]["backends"]["items"]
    assert set(backend_items["enum"]) == set(backends.NAMES)


DELETE = object()


def apply(config, changes):
    for dotted, value in changes.items():
        *parents, last = dotted.split(".")
        node = config
        for key in parents:
            node = node[key]
        if value is DELETE:
            del node[last]
        else:
            node[last] = value
    return config


NO_CHECKSUM = {"dataset.files.test_labels.md5": DELETE, "dataset.files.test_labels.sha256": DELETE}


@pytest.mark.parametrize(
    ("changes", "complaint", "where"),
    [
        ({"train.epochs": -1}, "less than the minimum of 1", "['train']['epochs']"),
        ({"train.batch_size": 0}, "less than the minimum of 1", "['train']['batch_size']"),
        ({"train.lr": 0}, "less than or equal to the minimum of 0", "['train']['lr']"),
        ({"train.device": "tpu"}, "is not one of", "['train']['device']"),
        ({"train.limit": 0}, "not valid under any of the given schemas", "['train']['limit']"),
        (
            {"inference.backends": ["torch", "numpy_fft"]},
            "is not one of",
            "['inference']['backends'][1]",
        ),
        (
            {"inference.backends": ["numpy_im2col"]},
            "does not contain items",
            "['inference']['backends']",
        ),
        (
            {"inference.backends": ["torch", "torch"]},
            "non-unique elements",
            "['inference']['backends']",
        ),
        ({"inference.shards": 0}, "less than the minimum of 1", "['inference']['shards']"),
        (
            {"dataset.mirrors": ["ftp://example.org/mnist/"]},
            "does not match",
            "['dataset']['mirrors'][0]",
        ),
        ({"dataset.mirrors": ["https//no-colon/"]}, "does not match", "['dataset']['mirrors'][0]"),
        ({"dataset.mirrors": []}, "should be non-empty", "['dataset']['mirrors']"),
        (
            {"dataset.files.test_labels.md5": "abc"},
            "does not match",
            "['dataset']['files']['test_labels']['md5']",
        ),
        (
            NO_CHECKSUM,
            "not valid under any of the given schemas",
            "['dataset']['files']['test_labels']",
        ),
        ({"train_numpy.dtype": "float16"}, "is not one of", "['train_numpy']['dtype']"),
        (
            {"train_numpy.check_steps": 0},
            "less than the minimum of 1",
            "['train_numpy']['check_steps']",
        ),
        ({"bench.processes": 1}, "less than the minimum of 2", "['bench']['processes']"),
        ({"bench.rounds": 0}, "less than the minimum of 1", "['bench']['rounds']"),
        ({"bench": DELETE}, "'bench' is a required property", ""),
        ({"train.epocs": 3}, "Additional properties are not allowed ('epocs'", "['train']"),
    ],
)
def test_bad_values_are_rejected_naming_the_key(config, changes, complaint, where):
    with pytest.raises(WorkflowError) as caught:
        validate(apply(config, changes), SCHEMA)
    message = str(caught.value)
    assert complaint in message
    assert f"On instance{where}:" in message


def test_another_idx_dataset_is_config_only(config):
    config["dataset"]["name"] = "Fashion-MNIST"
    config["dataset"]["files"]["train_images"] = {
        "file": "train-images-idx3-ubyte.gz",
        "sha256": "a" * 64,
    }
    validate(config, SCHEMA)


def test_bad_config_stops_snakemake_before_any_job(tmp_path, run_snakemake):
    workdir = tmp_path / "run"
    result = run_snakemake(
        workdir, {"dataset": {"mirrors": ["not-a-url"]}}, "--cores", "1", timeout=120
    )
    assert result.returncode != 0
    assert "Error validating config file" in result.stderr
    assert "On instance['dataset']['mirrors'][0]" in result.stderr
    assert not (workdir / "results").exists()
