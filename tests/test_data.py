import gzip
import hashlib
import http.server
import json
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import mnist_source
import numpy as np
import pytest
import yaml
from conftest import run_step

from cnnbench import data
from cnnbench.common.errors import UserError
from cnnbench.network.architecture import SEED
from cnnbench.steps import download as download_step

TEST_LABELS = "t10k-labels-idx1-ubyte.gz"
TEST_LABELS_MD5 = "ec29112dd5afa0611ce80d1b7f02629c"
TEST_LABELS_SHA256 = "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"


def write_idx(path, magic, shape, payload, compress=False):
    header = magic.to_bytes(4, "big") + b"".join(size.to_bytes(4, "big") for size in shape)
    opener = gzip.open if compress else open
    with opener(path, "wb") as stream:
        stream.write(header + payload)
    return path


# ----------------------------------------------------------------------------- IDX reader


def test_read_idx_real_test_set(mnist_dir):
    images, labels = data.load_split(
        mnist_dir / "t10k-images-idx3-ubyte.gz", mnist_dir / TEST_LABELS, SEED
    )
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10000,) and labels.dtype == np.uint8
    # First labels of the official test set, and its class counts (published with MNIST).
    assert labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert np.bincount(labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert images.max() == 255 and images.min() == 0


@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_raw_and_gzip(tmp_path, compress):
    pixels = np.arange(2 * 3 * 4, dtype=np.uint8)
    path = write_idx(tmp_path / "x", data.IMAGES_MAGIC, (2, 3, 4), pixels.tobytes(), compress)
    np.testing.assert_array_equal(data.read_idx(path), pixels.reshape(2, 3, 4))


@pytest.mark.parametrize(
    ("magic", "shape", "payload", "message"),
    [
        (1234, (2,), b"\x00\x01", "magic number 1234"),
        (data.LABELS_MAGIC, (5,), b"\x00\x01", "truncated"),
        (data.LABELS_MAGIC, (2,), b"\x00\x01\x02", "trailing data"),
        (data.IMAGES_MAGIC, (0, 28, 28), b"", "empty dimension"),
    ],
)
def test_read_idx_rejects_damaged_files(tmp_path, magic, shape, payload, message):
    path = write_idx(tmp_path / "bad.idx", magic, shape, payload)
    with pytest.raises(data.DataError, match=message) as caught:
        data.read_idx(path)
    assert "bad.idx" in str(caught.value)


def test_read_idx_rejects_truncated_gzip(tmp_path, mnist_dir):
    damaged = tmp_path / "cut.gz"
    damaged.write_bytes((mnist_dir / TEST_LABELS).read_bytes()[:2000])
    with pytest.raises(data.DataError, match=r"cut\.gz"):
        data.read_idx(damaged)


def test_load_split_rejects_count_mismatch_and_swapped_files(tmp_path):
    images = write_idx(tmp_path / "i", data.IMAGES_MAGIC, (3, 2, 2), bytes(12))
    labels = write_idx(tmp_path / "l", data.LABELS_MAGIC, (2,), bytes(2))
    with pytest.raises(data.DataError, match=r"3 images but .* 2 labels"):
        data.load_split(images, labels, SEED)
    with pytest.raises(data.DataError, match="holds labels"):
        data.load_split(labels, labels, SEED)


def test_load_split_rejects_labels_outside_the_classes(tmp_path):
    images = write_idx(tmp_path / "images.idx", data.IMAGES_MAGIC, (3, 28, 28), bytes(3 * 784))
    labels = write_idx(tmp_path / "labels.idx", data.LABELS_MAGIC, (3,), bytes([9, 200, 10]))
    with pytest.raises(data.DataError) as caught:
        data.load_split(images, labels, SEED)
    message = str(caught.value)
    assert message.startswith(f"{labels}: label 200 at index 1 (2 labels in all) is outside 0..9")
    assert "\n" not in message and isinstance(caught.value, UserError)
    good = write_idx(tmp_path / "good.idx", data.LABELS_MAGIC, (3,), bytes([0, 9, 5]))
    assert data.load_split(images, good, SEED)[1].tolist() == [0, 9, 5]


def test_load_split_rejects_images_of_another_size(tmp_path):
    images = write_idx(tmp_path / "small.idx", data.IMAGES_MAGIC, (2, 14, 14), bytes(2 * 196))
    labels = write_idx(tmp_path / "labels.idx", data.LABELS_MAGIC, (2,), bytes([1, 2]))
    with pytest.raises(
        data.DataError, match=r"small\.idx: images are 14x14 pixels, the network takes 28x28"
    ):
        data.load_split(images, labels, SEED)


def test_to_model_input_scales_like_training():
    pixels = np.array([[[0, 51], [255, 128]]], dtype=np.uint8)
    x = data.to_model_input(pixels)
    assert x.dtype == np.float32 and x.shape == (1, 1, 2, 2)
    np.testing.assert_array_equal(x[0, 0], np.float32([[0, 0.2], [1, 128 / 255]]))


# ----------------------------------------------------------------------------- download


def test_download_file_mirror_verifies_both_checksums(tmp_path, mnist_mirror):
    out = tmp_path / "data" / TEST_LABELS
    digests = data.download(
        TEST_LABELS,
        [mnist_mirror],
        out,
        {"md5": TEST_LABELS_MD5, "sha256": TEST_LABELS_SHA256},
        log=print,
    )
    assert digests == {"md5": TEST_LABELS_MD5, "sha256": TEST_LABELS_SHA256}
    assert hashlib.md5(out.read_bytes()).hexdigest() == TEST_LABELS_MD5
    assert sorted(p.name for p in out.parent.iterdir()) == [TEST_LABELS]  # no temporary left


def test_download_falls_back_to_second_mirror(tmp_path, mnist_mirror):
    missing = (tmp_path / "nowhere").as_uri() + "/"
    messages = []
    out = tmp_path / TEST_LABELS
    data.download(
        TEST_LABELS, [missing, mnist_mirror], out, {"md5": TEST_LABELS_MD5}, log=messages.append
    )
    assert out.is_file()
    assert "nowhere" in messages[0] and mnist_mirror in messages[-1]
    # A missing file is permanent: one attempt, no retries with backoff.
    assert sum("nowhere" in m for m in messages) == 1


def test_download_corrupted_mirror_leaves_nothing(tmp_path, mnist_dir):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    corrupted = bytearray((mnist_dir / TEST_LABELS).read_bytes())
    corrupted[100] ^= 0xFF
    (mirror / TEST_LABELS).write_bytes(corrupted)
    out_dir = tmp_path / "out"
    with pytest.raises(data.DownloadError) as caught:
        data.download(
            TEST_LABELS,
            [mirror.as_uri()],
            out_dir / TEST_LABELS,
            {"md5": TEST_LABELS_MD5},
            log=print,
        )
    message = str(caught.value)
    actual_md5 = hashlib.md5(corrupted).hexdigest()
    assert TEST_LABELS in message and mirror.as_uri() in message
    assert f"expected {TEST_LABELS_MD5}, got {actual_md5}" in message
    assert list(out_dir.iterdir()) == []


def test_download_retries_transient_errors_with_backoff(tmp_path, mnist_dir, monkeypatch):
    real_urlopen = urllib.request.urlopen
    calls = []

    def flaky(url, timeout):
        calls.append(url)
        if len(calls) < 3:
            raise urllib.error.URLError(TimeoutError("timed out"))
        return real_urlopen(url, timeout=timeout)

    sleeps = []
    monkeypatch.setattr(urllib.request, "urlopen", flaky)
    monkeypatch.setattr(data.time, "sleep", sleeps.append)
    data.download(
        TEST_LABELS,
        [mnist_dir.as_uri()],
        tmp_path / "l.gz",
        {"sha256": TEST_LABELS_SHA256},
        backoff_s=0.5,
        log=print,
    )
    assert len(calls) == 3 and sleeps == [0.5, 1.0]


def test_download_refuses_unverified_files(tmp_path, mnist_mirror):
    with pytest.raises(data.DataError, match="no md5 or sha256"):
        data.download(TEST_LABELS, [mnist_mirror], tmp_path / "x", {"md5": "", "sha256": ""})


def test_download_step_error_is_one_line(tmp_path, mnist_dir, capsys):
    shutil.copy(mnist_dir / TEST_LABELS, tmp_path / TEST_LABELS)
    with pytest.raises(SystemExit) as caught:
        run_step(
            download_step,
            output={"file": tmp_path / "o" / "x"},
            settings={"file": TEST_LABELS, "mirrors": [tmp_path.as_uri()], "md5": "0" * 32},
        )
    assert caught.value.code == 2
    error = capsys.readouterr().err
    assert "checksum mismatch" in error and "Traceback" not in error
    assert not (tmp_path / "o" / "x").exists()


# ----------------------------------------------------------------------------- bounded downloads


class _Mirror(http.server.BaseHTTPRequestHandler):
    """A misbehaving mirror on 127.0.0.1; the first path component picks the fault."""

    payload = b""  # the real file, set by the fixture

    def do_GET(self):
        fault = self.path.strip("/").split("/")[0]
        self.send_response(200)
        if fault == "good":
            self.send_header("Content-Length", str(len(self.payload)))
            self.end_headers()
            self.wfile.write(self.payload)
            return
        if fault == "lying":  # announces one size, the config says another
            self.send_header("Content-Length", str(10 * len(self.payload)))
            self.end_headers()
            return
        self.end_headers()
        try:
            if fault == "endless":  # no Content-Length, never stops
                while True:
                    self.wfile.write(b"\0" * 65536)
            elif fault == "stalled":  # a few bytes, then silence
                self.wfile.write(b"\x1f\x8b")
                self.wfile.flush()
                time.sleep(5)
            elif fault == "trickle":  # a byte every 50 ms: each read succeeds, the whole never ends
                for _ in range(200):
                    self.wfile.write(b"\0")
                    self.wfile.flush()
                    time.sleep(0.05)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def http_mirror(mnist_dir):
    _Mirror.payload = (mnist_dir / TEST_LABELS).read_bytes()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Mirror)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _fetch(tmp_path, mirrors, **options):
    out = tmp_path / "out" / TEST_LABELS
    options = {"attempts": 1, "timeout_s": 5.0, "log": print, **options}
    return out, data.download(TEST_LABELS, mirrors, out, {"sha256": TEST_LABELS_SHA256}, **options)


@pytest.mark.parametrize(
    ("fault", "options", "reason"),
    [
        ("endless", {"size": 4542}, "sent more than 4542 bytes (the config's size); stopped"),
        ("lying", {"size": 4542}, "announces 45420 bytes, the config's size is 4542"),
        ("stalled", {"timeout_s": 0.5}, "timed out (nothing received for 0.5 s)"),
        ("trickle", {"deadline_s": 0.5}, "too slow: "),
    ],
)
def test_download_is_bounded_and_names_the_mirror(tmp_path, http_mirror, fault, options, reason):
    started = time.monotonic()
    with pytest.raises(data.DownloadError) as caught:
        _fetch(tmp_path, [f"{http_mirror}/{fault}/"], **options)
    assert time.monotonic() - started < 4
    message = str(caught.value)
    assert message.startswith(
        f"could not download {TEST_LABELS}: {http_mirror}/{fault}/{TEST_LABELS}: {reason}"
    )
    assert "\n" not in message and "check dataset.mirrors in config.yaml" in message
    assert list((tmp_path / "out").iterdir()) == []  # nothing kept, no temporary left


def test_download_without_any_size_stops_at_the_cap(tmp_path, http_mirror, monkeypatch):
    monkeypatch.setattr(data, "MAX_BYTES", 1 << 20)
    with pytest.raises(data.DownloadError, match=r"sent more than 1048576 bytes \(the 1 GiB cap"):
        _fetch(tmp_path, [f"{http_mirror}/endless/"])


def test_download_falls_back_from_a_bad_mirror_to_a_good_one(tmp_path, http_mirror):
    out, digests = _fetch(tmp_path, [f"{http_mirror}/endless/", f"{http_mirror}/good/"], size=4542)
    assert digests["sha256"] == TEST_LABELS_SHA256 and out.stat().st_size == 4542


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_download_step_removes_its_temporary_file_when_stopped(tmp_path, http_mirror, stop):
    out_dir = tmp_path / "out"
    job = {
        "output": {"file": str(out_dir / TEST_LABELS)},
        "settings": {
            "file": TEST_LABELS,
            "mirrors": [f"{http_mirror}/endless/"],
            "sha256": TEST_LABELS_SHA256,
        },
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "cnnbench.steps.download", json.dumps(job)],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not (out_dir.is_dir() and any(p.stat().st_size for p in out_dir.iterdir())):
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.05)
        process.send_signal(stop)
        _, stderr = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 128 + stop
    assert f"stopped by {signal.Signals(stop).name}" in stderr
    assert list(out_dir.iterdir()) == []


# ----------------------------------------------------------------------------- the tests' MNIST


def test_a_fresh_clone_fetches_mnist_once_into_a_cache(tmp_path, mnist_dir):
    """Outside this layout (no ../shared/mnist) the tests download MNIST once, verified."""
    repo = tmp_path / "clone" / "cnnbench"
    repo.mkdir(parents=True)
    config = yaml.safe_load((mnist_source.REPO / "config.yaml").read_text())
    config["dataset"]["mirrors"] = [(tmp_path / "offline").as_uri() + "/", mnist_dir.as_uri() + "/"]
    (repo / "config.yaml").write_text(yaml.safe_dump(config))
    cache = tmp_path / "cache"
    messages = []
    assert mnist_source.locate_mnist({}, repo, cache, log=messages.append) == cache
    assert sum(m.startswith("fetching") for m in messages) == 4
    assert sum(m.startswith("verified") for m in messages) == 4
    for spec in mnist_source.dataset_config(repo)["files"].values():
        assert data.file_digests(cache / spec["file"])["sha256"] == spec["sha256"]

    messages.clear()  # second session: nothing fetched
    assert mnist_source.locate_mnist({}, repo, cache, log=messages.append) == cache
    assert messages == []
    (cache / TEST_LABELS).write_bytes(b"damaged")  # a damaged copy is fetched again
    assert mnist_source.locate_mnist({}, repo, cache, log=messages.append) == cache
    assert [m for m in messages if m.startswith("fetching")] == [
        f"fetching {TEST_LABELS} into {cache} (once; checksums verified)"
    ]
    assert hashlib.md5((cache / TEST_LABELS).read_bytes()).hexdigest() == TEST_LABELS_MD5

    shared = tmp_path / "clone" / "shared" / "mnist"  # this layout: ../shared/mnist wins
    shutil.copytree(cache, shared)
    assert mnist_source.locate_mnist({}, repo, tmp_path / "unused") == shared
    assert mnist_source.locate_mnist({"CNNBENCH_MNIST_DIR": str(cache)}, repo) == cache
    with pytest.raises(mnist_source.MnistMissing, match="does not hold the four MNIST"):
        mnist_source.locate_mnist({"CNNBENCH_MNIST_DIR": str(tmp_path)}, repo)


def test_no_mnist_and_no_mirror_says_what_to_do(tmp_path):
    repo = tmp_path / "cnnbench"
    repo.mkdir()
    config = yaml.safe_load((mnist_source.REPO / "config.yaml").read_text())
    config["dataset"]["mirrors"] = [(tmp_path / "offline").as_uri() + "/"]
    (repo / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(mnist_source.MnistMissing) as caught:
        mnist_source.locate_mnist({}, repo, tmp_path / "cache", log=print)
    message = str(caught.value)
    # the first file of the preset: (config.yaml names the dataset, cnnbench.datasets its files)
    assert "the download failed (could not download train-images-idx3-ubyte.gz: file://" in message
