"""MNIST-layout datasets: checksum-verified download and the IDX file format.

Any dataset in MNIST's layout (Fashion-MNIST, KMNIST, ...) works by changing the config only.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np

from cnnbench.common.errors import UserError
from cnnbench.common.files import atomic_output
from cnnbench.network.architecture import Architecture

IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions
LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension
DIGESTS = ("md5", "sha256")


class DataError(UserError, ValueError):
    """A dataset file that is missing, damaged, or not what the config says it is."""


class DownloadError(UserError, RuntimeError):
    """No mirror delivered a file whose checksums match."""


# ---------------------------------------------------------------------------- IDX format


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (raw or ``.gz``) of unsigned bytes: images (N, rows, cols) or labels (N,)."""
    path = Path(path)
    try:
        opener = gzip.open if _is_gzip(path) else open
        with opener(path, "rb") as stream:
            payload = stream.read()
    except (OSError, EOFError) as error:  # gzip raises BadGzipFile (an OSError) or EOFError
        raise DataError(f"{path}: cannot read ({error})") from error
    if len(payload) < 8:
        raise DataError(f"{path}: {len(payload)} bytes is too short for an IDX header")
    magic = int.from_bytes(payload[:4], "big")
    if magic not in (IMAGES_MAGIC, LABELS_MAGIC):
        raise DataError(
            f"{path}: magic number {magic} is neither {IMAGES_MAGIC} (images) nor {LABELS_MAGIC} (labels)"
        )
    ndim = 3 if magic == IMAGES_MAGIC else 1
    header_bytes = 4 + 4 * ndim
    if len(payload) < header_bytes:
        raise DataError(f"{path}: header truncated ({len(payload)} of {header_bytes} bytes)")
    shape = tuple(int.from_bytes(payload[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if any(size == 0 for size in shape):
        raise DataError(f"{path}: empty dimension in shape {shape}")
    expected = header_bytes + int(np.prod(shape))
    if len(payload) != expected:
        raise DataError(
            f"{path}: {len(payload)} bytes, expected {expected} for shape {shape} "
            f"({'truncated' if len(payload) < expected else 'trailing data'})"
        )
    return np.frombuffer(payload, dtype=np.uint8, offset=header_bytes).reshape(shape)


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as stream:
        return stream.read(2) == b"\x1f\x8b"


def load_split(
    images_path: str | Path, labels_path: str | Path, architecture: Architecture
) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, rows, cols) and labels (N,) as uint8, checked against the network: as many
    labels as images, images of its input size, label values among its classes."""
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim != 3:
        raise DataError(f"{images_path}: holds labels (1-D), expected images")
    if labels.ndim != 1:
        raise DataError(f"{labels_path}: holds images (3-D), expected labels")
    if len(images) != len(labels):
        raise DataError(
            f"{images_path} has {len(images)} images but {labels_path} has {len(labels)} labels"
        )
    _, height, width = architecture.input_shape
    if images.shape[1:] != (height, width):
        raise DataError(
            f"{images_path}: images are {images.shape[1]}x{images.shape[2]} pixels, the network "
            f"takes {height}x{width} (check dataset.image_size and dataset.files in config.yaml)"
        )
    classes = architecture.classes
    bad = np.flatnonzero(labels >= classes)
    if len(bad):
        raise DataError(
            f"{labels_path}: label {labels[bad[0]]} at index {bad[0]} ({len(bad)} labels in all) "
            f"is outside 0..{classes - 1}, the network's classes (check dataset.classes and "
            "dataset.files in config.yaml)"
        )
    return images, labels


def to_model_input(images: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W) -> float32 (N, 1, H, W) in [0, 1]: the one scaling used everywhere."""
    return (np.asarray(images, dtype=np.float32) / np.float32(255.0))[:, None, :, :]


# ---------------------------------------------------------------------------- download


def file_digests(path: str | Path) -> dict[str, str]:
    """md5 and sha256 of a file, hex."""
    hashes = {name: hashlib.new(name) for name in DIGESTS}
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            for digest in hashes.values():
                digest.update(block)
    return {name: digest.hexdigest() for name, digest in hashes.items()}


MAX_BYTES = 1 << 30  # no dataset file may exceed this when neither config nor server gives a size
CHUNK = 1 << 16


def download(
    filename: str,
    mirrors: list[str],
    destination: str | Path,
    checksums: dict[str, str],
    *,
    size: int | None = None,
    attempts: int = 3,
    timeout_s: float = 60.0,
    deadline_s: float = 600.0,
    backoff_s: float = 1.0,
    log=print,
) -> dict[str, str]:
    """Fetch ``filename`` from the first mirror that serves it with matching checksums.

    One code path for https://, http:// and file:// (urllib handles all three). Each transfer goes
    to a temporary file beside ``destination`` and is renamed into place only after every given
    checksum matches, so an interrupted or corrupted download never leaves a file a rerun would
    trust. Every attempt is bounded: in bytes by ``size`` (the config's), else by the server's
    Content-Length, else by MAX_BYTES; in time by ``timeout_s`` for connecting and for each read,
    and by ``deadline_s`` for the whole transfer. Transient failures (timeouts, server errors)
    are retried with exponential backoff; a wrong size, a checksum mismatch or a missed deadline
    is not transient for that mirror and moves on to the next one. Returns the verified digests.
    """
    wanted = {name: value.lower() for name, value in checksums.items() if value}
    if not wanted:
        raise DataError(f"{filename}: no md5 or sha256 given; refusing to download unverified data")
    if not mirrors:
        raise DataError(f"{filename}: no mirrors configured")
    failures: dict[str, str] = {}
    for mirror in mirrors:
        url = urllib.parse.urljoin(mirror if mirror.endswith("/") else mirror + "/", filename)
        for attempt in range(1, attempts + 1):
            try:
                with atomic_output(destination) as temporary:
                    _transfer(url, temporary, size, timeout_s, deadline_s)
                    actual = file_digests(temporary)
                    mismatched = {
                        name: (value, actual[name])
                        for name, value in wanted.items()
                        if actual[name] != value
                    }
                    if mismatched:
                        raise _WrongBytes(
                            "checksum mismatch: "
                            + "; ".join(
                                f"{name} expected {exp}, got {got}"
                                for name, (exp, got) in mismatched.items()
                            )
                        )
            except _WrongBytes as wrong:
                failures[url] = str(wrong)
                log(f"giving up on {url}: {wrong}")
                break  # the mirror serves the wrong bytes, or too slowly; retrying will not help
            except (
                urllib.error.URLError,
                OSError,
                TimeoutError,
                http.client.HTTPException,
            ) as error:
                reason = _reason(error, timeout_s)
                failures[url] = reason + (f" (after {attempt} attempts)" if attempt > 1 else "")
                log(f"failed to fetch {url} (attempt {attempt}/{attempts}): {reason}")
                if _is_permanent(error) or attempt == attempts:
                    break
                time.sleep(backoff_s * 2 ** (attempt - 1))
            else:
                log(
                    f"verified {filename} from {url} ({', '.join(f'{k} {actual[k]}' for k in wanted)})"
                )
                return actual
    raise DownloadError(
        f"could not download {filename}: "
        + "; ".join(f"{url}: {reason}" for url, reason in failures.items())
        + " (check dataset.mirrors in config.yaml, or use a local copy: README, 'Offline')"
    )


class _WrongBytes(Exception):
    """The mirror answered, but not with the configured file (size, checksum) or not in time."""


def _transfer(url: str, out: Path, size: int | None, timeout_s: float, deadline_s: float) -> None:
    """Copy ``url`` to ``out``, bounded in bytes and time (see ``download``)."""
    started = time.monotonic()
    with out.open("wb") as sink, urllib.request.urlopen(url, timeout=timeout_s) as response:
        announced = response.headers.get("Content-Length")
        announced = int(announced) if announced and announced.isdigit() else None
        if size is not None and announced is not None and announced != size:
            raise _WrongBytes(f"announces {announced} bytes, the config's size is {size}")
        if size is not None:
            limit, why = size, "the config's size"
        elif announced is not None:
            limit, why = announced, "its Content-Length"
        else:
            limit, why = MAX_BYTES, "the 1 GiB cap: no size in the config, no Content-Length"
        if limit > MAX_BYTES:
            raise _WrongBytes(f"announces {limit} bytes, more than the 1 GiB cap")
        read = getattr(response, "read1", response.read)  # read1: return what has arrived
        received = 0
        while block := read(CHUNK):
            received += len(block)
            if received > limit:
                raise _WrongBytes(f"sent more than {limit} bytes ({why}); stopped")
            if time.monotonic() - started > deadline_s:
                of = f" of {limit}" if limit != MAX_BYTES else ""
                raise _WrongBytes(f"too slow: {received}{of} bytes after {deadline_s:g} s; stopped")
            sink.write(block)
    if size is not None and received != size:
        raise _WrongBytes(f"sent {received} bytes, the config's size is {size}")


def _reason(error: Exception, timeout_s: float) -> str:
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    cause = error.reason if isinstance(error, urllib.error.URLError) else error
    if isinstance(cause, TimeoutError):
        return f"timed out (nothing received for {timeout_s:g} s)"
    return str(cause) or type(cause).__name__


def _is_permanent(error: Exception) -> bool:
    """Missing files and client errors will not go away on retry; network hiccups might."""
    if isinstance(error, urllib.error.HTTPError):
        return 400 <= error.code < 500 and error.code not in (408, 429)
    reason = getattr(error, "reason", error)
    return isinstance(reason, FileNotFoundError | IsADirectoryError | PermissionError)
