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
from cnnbench.network.architecture import Architecture, from_dict

# A fixed timestamp makes the zip container byte-identical across runs (np.savez stamps "now").
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


class WeightsError(UserError, ValueError):
    """A weights file that is missing, damaged, or does not fit the architecture."""


def save_weights(
    path: str | Path, arrays: dict[str, np.ndarray], architecture: Architecture
) -> str:
    """Write ``arrays`` as an ``.npz`` (float32, PyTorch layouts); return the file's sha256.

    Byte-identical output for identical arrays: members in architecture order, fixed zip times.
    """
    check_parameters(arrays, architecture, source="arrays to save")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name in architecture.parameter_shapes:
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


def verify_exported(weights: str | Path, manifest: str | Path) -> Architecture:
    """Check that ``weights`` are the exported ones: their sha256 is the one the export step wrote
    into ``manifest``. Every consumer of the pipeline's weights calls this (or
    ``load_verified``) first, so nothing runs on a replaced or damaged file. Returns the
    architecture the manifest records: the network the weights belong to."""
    weights, manifest = Path(weights), Path(manifest)
    try:
        record = json.loads(manifest.read_text())
        expected = record["sha256"]
        architecture = from_dict(record["architecture"])
    except FileNotFoundError:
        raise WeightsError(f"{manifest}: no such manifest; {REBUILD}") from None
    except (ValueError, KeyError, TypeError) as error:  # ArchitectureError is a ValueError
        raise WeightsError(f"{manifest}: not a weights manifest ({error}); {REBUILD}") from None
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
    return architecture


def load_verified(
    weights: str | Path, manifest: str | Path
) -> tuple[dict[str, np.ndarray], Architecture]:
    """The exported weights and their architecture (``verify_exported`` first, then
    ``load_weights``)."""
    architecture = verify_exported(weights, manifest)
    return load_weights(weights, architecture), architecture


def load_weights(path: str | Path, architecture: Architecture) -> dict[str, np.ndarray]:
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
    check_parameters(arrays, architecture, source=str(path))
    return arrays


def check_parameters(
    arrays: dict[str, np.ndarray], architecture: Architecture, source: str
) -> None:
    """Raise WeightsError, naming the first tensor that differs, unless ``arrays`` holds exactly
    ``architecture``'s parameters: the same names and shapes, float32, finite."""
    expected = architecture.parameter_shapes
    for name, shape in expected.items():
        if name not in arrays:
            raise WeightsError(
                f"{source}: no {name} {shape}: the weights are not of this architecture"
            )
        array = np.asarray(arrays[name])
        if array.shape != shape:
            raise WeightsError(
                f"{source}: {name} has shape {array.shape}, the architecture's is {shape}"
            )
        if array.dtype != np.float32:
            raise WeightsError(f"{source}: {name} has dtype {array.dtype}, expected float32")
        if not np.all(np.isfinite(array)):
            raise WeightsError(f"{source}: {name} contains non-finite values")
    extra = [name for name in arrays if name not in expected]
    if extra:
        raise WeightsError(
            f"{source}: {extra[0]} is not a parameter of this architecture "
            f"({len(extra)} unexpected in all)"
        )
