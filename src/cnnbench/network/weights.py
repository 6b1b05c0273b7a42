"""The exported ``weights.npz`` format: byte-reproducible writing, validated reading.

NumPy only: the hand-written backends load weights through here without importing torch.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import numpy as np

from cnnbench.common.errors import UserError
from cnnbench.network.architecture import PARAMETER_SHAPES

# A fixed timestamp makes the zip container byte-identical across runs (np.savez stamps "now").
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


class WeightsError(UserError, ValueError):
    """A weights file that is missing, damaged, or does not fit the architecture."""


def save_weights(path: str | Path, arrays: dict[str, np.ndarray]) -> str:
    """Write ``arrays`` as an ``.npz`` (float32, PyTorch layouts); return the file's sha256.

    Byte-identical output for identical arrays: members in architecture order, fixed zip times.
    """
    check_parameters(arrays, source="arrays to save")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name in PARAMETER_SHAPES:
            member = io.BytesIO()
            np.lib.format.write_array(
                member, np.ascontiguousarray(arrays[name], dtype=np.float32), allow_pickle=False
            )
            archive.writestr(
                zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_EPOCH), member.getvalue()
            )
    data = buffer.getvalue()
    Path(path).write_bytes(data)
    return hashlib.sha256(data).hexdigest()


REBUILD = "rebuild them from the checkpoint: snakemake --cores 4 --forcerun export_weights"


def verify_exported(weights: str | Path, manifest: str | Path) -> str:
    """Check that ``weights`` are the exported ones: their sha256 is the one the export step wrote
    into ``manifest``. Every consumer of the pipeline's weights calls this (or
    ``load_verified``) first, so nothing runs on a replaced or damaged file. Returns the sha256."""
    weights, manifest = Path(weights), Path(manifest)
    try:
        expected = json.loads(manifest.read_text())["sha256"]
    except FileNotFoundError:
        raise WeightsError(f"{manifest}: no such manifest; {REBUILD}") from None
    except (ValueError, KeyError, TypeError) as error:
        raise WeightsError(
            f"{manifest}: not a weights manifest (no sha256: {error}); {REBUILD}"
        ) from None
    if not weights.is_file():
        raise WeightsError(f"{weights}: no such weights file; {REBUILD}")
    digest = hashlib.sha256()
    with open(weights, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    actual = digest.hexdigest()
    if actual != expected:
        raise WeightsError(
            f"{weights} are not the exported weights: sha256 {actual[:12]}..., but {manifest} "
            f"records {expected[:12]}... (replaced or damaged since the export); {REBUILD}"
        )
    return actual


def load_verified(weights: str | Path, manifest: str | Path) -> dict[str, np.ndarray]:
    """``load_weights`` of the exported weights only (``verify_exported`` first)."""
    verify_exported(weights, manifest)
    return load_weights(weights)


def load_weights(path: str | Path) -> dict[str, np.ndarray]:
    """Read and validate an exported ``weights.npz``; return float32 arrays by state_dict key."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such weights file")
    if not zipfile.is_zipfile(path):
        raise WeightsError(
            f"{path}: not a readable .npz file (no zip archive; truncated or wrong file?)"
        )
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except ValueError as error:  # numpy refuses object arrays without allow_pickle
        raise WeightsError(f"{path}: holds pickled objects, refused ({error})") from error
    except (OSError, zipfile.BadZipFile, EOFError) as error:
        raise WeightsError(f"{path}: not a readable .npz file ({error})") from error
    check_parameters(arrays, source=str(path))
    return arrays


def check_parameters(arrays: dict[str, np.ndarray], source: str) -> None:
    """Raise WeightsError unless ``arrays`` has exactly the architecture's keys, shapes, float32."""
    missing = [name for name in PARAMETER_SHAPES if name not in arrays]
    extra = sorted(set(arrays) - set(PARAMETER_SHAPES))
    if missing or extra:
        raise WeightsError(
            f"{source}: keys do not match the architecture (missing {missing}, unexpected {extra})"
        )
    for name, shape in PARAMETER_SHAPES.items():
        array = np.asarray(arrays[name])
        if array.shape != shape:
            raise WeightsError(f"{source}: {name} has shape {array.shape}, expected {shape}")
        if array.dtype != np.float32:
            raise WeightsError(f"{source}: {name} has dtype {array.dtype}, expected float32")
        if not np.all(np.isfinite(array)):
            raise WeightsError(f"{source}: {name} contains non-finite values")
