"""config.yaml and its schema: the defaults validate, bad values are refused naming the key."""

import copy
import os
from pathlib import Path

import pytest
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from cnnbench import backends, datasets
from cnnbench.common import config as cnnbench_config

REPO = Path(__file__).resolve().parents[1]
SCHEMA = str(REPO / "workflow" / "schemas" / "config.schema.yaml")


@pytest.fixture
def config():
    """config.yaml as the Snakefile validates it: the dataset completed from its preset."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    cnnbench_config.resolve(config)
    return config


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
    assert config["train_numpy"] == {"dtype": "float32", "check_steps": 200, "threads": 1}
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


# ---------------------------------------------------------------------------- command-line values


def override(config, *entries):
    """config.yaml plus ``--config`` entries, merged exactly as Snakemake does, then typed."""
    from snakemake.cli import parse_config
    from snakemake.utils import update_config

    update_config(config, parse_config(list(entries)))
    cnnbench_config.prepare(config, cnnbench_config.load_schema(SCHEMA))
    return config


@pytest.mark.parametrize(
    ("entry", "section", "expected"),
    [
        ("inference={limit: 1000}", "inference", {"limit": 1000}),
        ('inference={"limit": 1000}', "inference", {"limit": 1000}),
        ("inference={limit: null}", "inference", {"limit": None}),
        ("inference={limit: ~}", "inference", {"limit": None}),
        ("train={epochs: 10, seed: 1}", "train", {"epochs": 10, "seed": 1}),
        ("train={lr: 0.01, device: cpu}", "train", {"lr": 0.01, "device": "cpu"}),
        ("train={lr: 1e-3}", "train", {"lr": 0.001}),
        (
            "inference={backends: [torch, numpy_im2col], throughput_batch_sizes: [1, 64]}",
            "inference",
            {"backends": ["torch", "numpy_im2col"], "throughput_batch_sizes": [1, 64]},
        ),
        (
            "inference={throughput_batch_sizes: '[2, 4]'}",
            "inference",
            {"throughput_batch_sizes": [2, 4]},
        ),
        (
            "dataset={mirrors: [file:///tmp/mnist/]}",
            "dataset",
            {"mirrors": ["file:///tmp/mnist/"]},
        ),
        ("dataset={name: '1000'}", "dataset", {"name": "1000"}),  # a string stays a string
    ],
)
def test_command_line_overrides_are_typed_by_the_schema(config, entry, section, expected):
    config = override(config, entry)
    validate(config, SCHEMA)
    cnnbench_config.check(config)
    for key, value in expected.items():
        assert config[section][key] == value and type(config[section][key]) is type(value), key
    assert config["train"]["threads"] == 2  # the rest of the section is kept


def test_untypeable_override_is_refused_naming_the_key(config):
    config = override(config, "train={epochs: many}")
    with pytest.raises(WorkflowError, match=r"'many' is not of type 'integer'"):
        validate(config, SCHEMA)


def test_coercion_follows_refs_combinators_booleans_and_objects():
    schema = {
        "$defs": {"flag": {"type": "boolean"}},
        "type": "object",
        "properties": {
            "flag": {"$ref": "#/$defs/flag"},
            "either": {"anyOf": [{"type": "null"}, {"type": "number"}]},
            "name": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
            "nested": {"type": "object", "properties": {"n": {"type": "integer"}}},
            "free": {},
        },
    }
    given = {"flag": "true", "either": "2.5", "name": "7", "nested": "{n: 3}", "free": "4"}
    assert cnnbench_config.coerce(given, schema) == {
        "flag": True,
        "either": 2.5,
        "name": "7",
        "nested": {"n": 3},
        "free": "4",
    }


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"train.lr": float("nan")}, "config train.lr is nan: must be a finite number"),
        ({"train.lr": float("inf")}, "config train.lr is inf: must be a finite number"),
        (
            {"dataset.files.test_labels.file": "t10k-images-idx3-ubyte.gz"},
            "dataset.files.test_images.file and dataset.files.test_labels.file are both",
        ),
    ],
)
def test_check_refuses_what_the_schema_cannot_express(config, changes, message):
    config = apply(config, changes)
    validate(config, SCHEMA)  # the schema alone lets it through
    with pytest.raises(cnnbench_config.ConfigError, match=message):
        cnnbench_config.check(config)


@pytest.mark.parametrize("name", ["..", ".", "../x.gz", "a/b.gz", "/etc/passwd", ".hidden.gz", ""])
def test_data_file_names_must_be_plain(config, name):
    config["dataset"]["files"]["test_labels"]["file"] = name
    with pytest.raises(WorkflowError, match="does not match"):
        validate(config, SCHEMA)


def test_nan_and_dotdot_stop_snakemake_with_one_message(tmp_path, run_snakemake):
    workdir = tmp_path / "run"
    nan = run_snakemake(
        workdir, {}, "-n", "--cores", "1", "--config", "train={lr: .nan}", timeout=120
    )
    assert nan.returncode != 0
    assert "config train.lr is nan: must be a finite number" in nan.stdout + nan.stderr
    files = copy.deepcopy(datasets.PRESETS["mnist"]["files"])
    files["test_labels"]["file"] = ".."
    dotdot = run_snakemake(
        workdir,
        {"dataset": {"files": files}},
        "-n",
        "--cores",
        "1",
        timeout=120,
    )
    assert dotdot.returncode != 0
    assert "On instance['dataset']['files']['test_labels']['file']" in dotdot.stdout + dotdot.stderr
    assert not (workdir / "results").exists()


def test_more_inference_threads_than_cores_warns_before_any_job(tmp_path, run_snakemake):
    machine = os.cpu_count() or 1
    too_many = run_snakemake(
        tmp_path / "a", {"inference": {"threads": machine + 1}}, "-n", "--cores", "1", timeout=120
    )
    output = too_many.stdout + too_many.stderr
    assert too_many.returncode == 0, output
    expected = (
        f"inference.threads is {machine + 1} but --cores is 1: every timed job would run "
        if machine > 1
        else "inference.threads is 2 but this machine has 1 cores: every timed job would run "
    )
    assert expected in output
    assert "Set inference.threads to at most 1." in output
    fits = run_snakemake(tmp_path / "b", {}, "-n", "--cores", "1", timeout=120)
    assert fits.returncode == 0 and "inference.threads is" not in fits.stdout + fits.stderr
