import hashlib
import io
import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import manifest_of

from cnnbench.network.architecture import SEED
from cnnbench.network.torch_model import Net, model_from_weights
from cnnbench.network.weights import (
    WeightsError,
    load_verified,
    load_weights,
    save_weights,
    verify_exported,
)

REPO = Path(__file__).resolve().parents[1]


def test_state_dict_matches_architecture(init_arrays):
    assert {name: a.shape for name, a in init_arrays.items()} == SEED.parameter_shapes


def test_npz_round_trip_is_exact_and_deterministic(tmp_path, init_arrays):
    first = save_weights(tmp_path / "a.npz", init_arrays, SEED)
    second = save_weights(tmp_path / "b.npz", init_arrays, SEED)
    assert first == second == hashlib.sha256((tmp_path / "a.npz").read_bytes()).hexdigest()
    loaded = load_weights(tmp_path / "a.npz", SEED)
    assert list(loaded) == list(SEED.parameter_shapes)
    for name, array in init_arrays.items():
        assert loaded[name].dtype == np.float32
        np.testing.assert_array_equal(loaded[name], array)
    # Plain NumPy reads it too, without pickle.
    with np.load(tmp_path / "a.npz", allow_pickle=False) as archive:
        assert sorted(archive.files) == sorted(SEED.parameter_shapes)


def test_npz_into_fresh_model_reproduces_logits(tmp_path, init_arrays):
    save_weights(tmp_path / "w.npz", init_arrays, SEED)
    x = torch.rand(16, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    original = Net(SEED)
    original.load_state_dict({k: torch.from_numpy(v) for k, v in init_arrays.items()})
    with torch.inference_mode():
        assert torch.equal(
            original.eval()(x), model_from_weights(load_weights(tmp_path / "w.npz", SEED), SEED)(x)
        )


def test_rejects_wrong_shape(tmp_path, init_arrays):
    init_arrays["fc1.weight"] = init_arrays["fc1.weight"][:, :100]
    np.savez(tmp_path / "w.npz", **init_arrays)
    with pytest.raises(
        WeightsError,
        match=r"fc1.weight has shape \(250, 100\), the architecture's is \(250, 2048\)$",
    ):
        load_weights(tmp_path / "w.npz", SEED)


def test_rejects_missing_and_extra_keys_naming_the_first(tmp_path, init_arrays):
    extra = {**init_arrays, "conv4.weight": np.zeros(3, np.float32), "pool1.x": np.zeros(1)}
    np.savez(tmp_path / "extra.npz", **extra)
    with pytest.raises(
        WeightsError,
        match=r"extra\.npz: conv4\.weight is not a parameter of this architecture \(2 unexpected",
    ):
        load_weights(tmp_path / "extra.npz", SEED)
    init_arrays.pop("conv2.bias")
    np.savez(tmp_path / "w.npz", **init_arrays)
    with pytest.raises(
        WeightsError, match=r"w\.npz: no conv2\.bias \(64,\): the weights are not of this arch"
    ):
        load_weights(tmp_path / "w.npz", SEED)


def test_rejects_wrong_dtype(tmp_path, init_arrays):
    init_arrays["conv1.bias"] = init_arrays["conv1.bias"].astype(np.float64)
    np.savez(tmp_path / "w.npz", **init_arrays)
    with pytest.raises(WeightsError, match=r"conv1\.bias has dtype float64, expected float32"):
        load_weights(tmp_path / "w.npz", SEED)


def test_rejects_truncated_file(tmp_path, init_arrays):
    save_weights(tmp_path / "w.npz", init_arrays, SEED)
    data = (tmp_path / "w.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match=r"cut\.npz"):
        load_weights(tmp_path / "cut.npz", SEED)


def test_rejects_pickle_bearing_file(tmp_path, init_arrays):
    arrays = dict(init_arrays)
    arrays["conv1.bias"] = np.array([{"evil": 1}], dtype=object)
    np.savez(tmp_path / "w.npz", **arrays)
    with pytest.raises(WeightsError, match="pickled objects"):
        load_weights(tmp_path / "w.npz", SEED)


def test_rejects_missing_and_non_zip_files(tmp_path):
    with pytest.raises(WeightsError, match="no such weights file"):
        load_weights(tmp_path / "absent.npz", SEED)
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(WeightsError, match=r"not a readable \.npz"):
        load_weights(tmp_path / "text.npz", SEED)


def test_saved_members_have_fixed_timestamps(tmp_path, init_arrays):
    save_weights(tmp_path / "w.npz", init_arrays, SEED)
    with zipfile.ZipFile(tmp_path / "w.npz") as archive:
        assert {info.date_time for info in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}


# ---------------------------------------------------------------------------- exported weights only


@pytest.fixture
def exported(tmp_path, weights_path):
    """A copy of the session's weights and manifest, free to damage."""
    folder = tmp_path / "model"
    folder.mkdir()
    for source in (weights_path, manifest_of(weights_path)):
        shutil.copy(source, folder / source.name)
    return folder / "weights.npz", folder / "manifest.json"


def _replace_with_other_weights(weights, nan=False):
    arrays = load_weights(weights, SEED)
    arrays["fc2.bias"] = arrays["fc2.bias"] + np.float32(0.5)
    if nan:
        arrays["conv1.weight"][0, 0, 0, 0] = np.nan
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)  # save_weights refuses NaN; a user's copy need not
        weights.write_bytes(buffer.getvalue())
    else:
        save_weights(weights, arrays, SEED)  # valid weights, just not the exported ones


def test_exported_weights_verify(exported):
    weights, manifest = exported
    sha256 = hashlib.sha256(weights.read_bytes()).hexdigest()
    assert json.loads(manifest.read_text())["sha256"] == sha256
    assert verify_exported(weights, manifest) == SEED
    arrays, architecture = load_verified(weights, manifest)
    assert set(arrays) == set(SEED.parameter_shapes) and architecture == SEED


@pytest.mark.parametrize("nan", [False, True])
def test_replaced_weights_are_refused_in_one_line(exported, nan):
    weights, manifest = exported
    expected = json.loads(manifest.read_text())["sha256"]
    _replace_with_other_weights(weights, nan)
    actual = hashlib.sha256(weights.read_bytes()).hexdigest()
    with pytest.raises(WeightsError) as caught:
        load_verified(weights, manifest)
    assert str(caught.value) == (
        f"{weights} are not the exported weights: sha256 {actual[:12]}..., but {manifest} "
        f"records {expected[:12]}... (replaced or damaged since the export); rebuild them from "
        "the checkpoint: snakemake --cores 4 --forcerun export_weights"
    )


def test_missing_or_foreign_manifest_is_refused(exported):
    weights, manifest = exported
    manifest.write_text('{"weights_file": "weights.npz"}')
    with pytest.raises(WeightsError, match=r"manifest.json: not a weights manifest \('sha256'\)"):
        verify_exported(weights, manifest)
    record = {"sha256": "0" * 64, "architecture": {"model": {"layers": []}}}
    manifest.write_text(json.dumps(record))
    with pytest.raises(WeightsError, match=r"manifest.json: not a weights manifest \(not an arch"):
        verify_exported(weights, manifest)
    manifest.unlink()
    with pytest.raises(WeightsError, match=r"manifest.json: no such manifest; rebuild them"):
        verify_exported(weights, manifest)


@pytest.mark.parametrize("step", ["gradcheck", "infer", "throughput", "layer_times"])
def test_no_step_runs_on_weights_that_are_not_the_exported_ones(
    exported, mnist_dir, tmp_path, step
):
    """The consumers of weights.npz, as the rules run them: one line, exit 2, no output."""
    weights, manifest = exported
    _replace_with_other_weights(weights, nan=True)
    settings = {
        "gradcheck": {"batch_size": 2, "samples": 2, "seed": 0},
        "infer": {
            "backend": "torch",
            "limit": 4,
            "shard": 0,
            "shards": 1,
            "warmup": 0,
            "threads": 1,
        },
        "throughput": {
            "backends": ["torch"],
            "threads": 1,
            "throughput_batch_sizes": [1],
            "throughput_loop_images": 2,
            "throughput_repeats": 1,
        },
        "layer_times": {
            "backends": ["torch"],
            "threads": 1,
            "images": 1,
            "rounds": 1,
            "batch_size": 2,
            "loop_images": 1,
            "processes": 2,
        },
    }[step]
    outputs = {"csv": str(tmp_path / "out.csv"), "meta": str(tmp_path / "out.json")}
    job = {
        "input": {
            "weights": str(weights),
            "manifest": str(manifest),
            "test_images": str(mnist_dir / "t10k-images-idx3-ubyte.gz"),
            "test_labels": str(mnist_dir / "t10k-labels-idx1-ubyte.gz"),
        },
        "output": outputs if step == "infer" else {"csv": outputs["csv"]},
        "settings": settings,
    }
    result = subprocess.run(
        [sys.executable, "-m", f"cnnbench.steps.{step}", json.dumps(job)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert lines[0].startswith(f"cnnbench.steps.{step}: error: {weights} are not the exported")
    assert "--forcerun export_weights" in lines[0]
    assert not (tmp_path / "out.csv").exists()


def test_bench_refuses_weights_that_are_not_the_exported_ones(exported, capsys):
    from cnnbench.bench import __main__ as bench

    weights, _ = exported
    _replace_with_other_weights(weights)
    with pytest.raises(SystemExit) as caught:
        bench.main(["--weights", str(weights)])
    assert caught.value.code == 2
    assert "are not the exported weights" in capsys.readouterr().err


def test_every_rule_reading_the_weights_reads_the_manifest():
    rules = REPO / "workflow" / "rules"
    blocks = [
        block
        for path in rules.glob("*.smk")
        for block in re.split(r"^rule ", path.read_text(), flags=re.M)[1:]
    ]
    inputs = {block.split(":")[0]: block.split("output:")[0] for block in blocks}
    # the experiment's training's files (common.smk: trained)
    readers = sorted(
        name for name, text in inputs.items() if re.search(r"=\s*trained\(WEIGHTS\)", text)
    )
    assert readers == ["bench_processes", "gradcheck", "infer_shard", "layer_times", "throughput"]
    for name in readers:
        assert re.search(r"=\s*trained\(MANIFEST\)", inputs[name]), name
    # the report's files (common.smk: report_files)
    report = (rules / "common.smk").read_text().split("def report_files(name):", 1)[1]
    report = report.split("\n\n\n", 1)[0]
    assert '"weights": training(WEIGHTS)' in report
    assert '"manifest": training(MANIFEST)' in report
    # the NumPy-trained weights likewise, against their own manifest
    numpy_readers = sorted(
        n for n, text in inputs.items() if re.search(r"=\s*trained\(WEIGHTS_NUMPY\)", text)
    )
    assert numpy_readers == ["infer_numpy_trained"]
    for name in numpy_readers:
        assert re.search(r"=\s*trained\(MANIFEST_NUMPY\)", inputs[name]), name
