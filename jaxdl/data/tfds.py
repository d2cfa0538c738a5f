"""Datasets through the real TFDS builders, prepared once and returned as numpy arrays.

Online, TFDS downloads the original files as usual. Offline, they come from a local
folder given by ``--manual-dir`` or ``$JAXDL_MANUAL_DIR`` that holds one folder per TFDS
builder name (``<manual_dir>/mnist/train-images-idx3-ubyte.gz``, ...); TFDS checks each
file's size and sha256 against the checksums it registers. Preparation writes into
``data_dir`` (default: TFDS's own, which honours ``$TFDS_DATA_DIR``) and later calls read
from there without the original files.

TensorFlow is imported only when a dataset is loaded, with its GPUs hidden so that it
never takes memory JAX needs.
"""

from __future__ import annotations

import difflib
import functools
import os
import re
import socket
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import NamedTuple

import jax
import numpy as np

MANUAL_DIR_ENV = "JAXDL_MANUAL_DIR"
_SEE_README = "they are the files TFDS would download, listed on the dataset's page of the TFDS catalog"


class DataError(RuntimeError):
    """A dataset could not be loaded; the message says what was expected and what to do."""


class ImageClassification(NamedTuple):
    """Splits ``{"x": float32 (N, H, W, C) in [0, 1], "y": int32 (N,)}`` and the label names."""

    train: dict
    test: dict
    num_classes: int
    class_names: list[str]


def resolve_manual_dir(manual_dir=None) -> Path | None:
    """The folder of original files: ``manual_dir``, else ``$JAXDL_MANUAL_DIR``, else None (download)."""
    chosen = manual_dir if manual_dir not in (None, "") else os.environ.get(MANUAL_DIR_ENV) or None
    return None if chosen is None else Path(chosen).expanduser()


def load_arrays(name: str, split: str, *, data_dir=None, manual_dir=None) -> dict[str, np.ndarray]:
    """The whole ``split`` of TFDS dataset ``name`` as numpy arrays, one per feature.

    Prepares the dataset into ``data_dir`` first if needed: from
    ``<manual_dir>/<builder name>/`` when a manual dir is given (see
    :func:`resolve_manual_dir`), else by downloading. ``split`` takes TFDS's syntax
    (``"train"``, ``"train[:10%]"``).
    """
    builder = _builder(name, data_dir)
    _ensure_prepared(builder, resolve_manual_dir(manual_dir))
    return _split_arrays(builder, split)


def load_image_classification(name: str = "mnist", *, data_dir=None, manual_dir=None) -> ImageClassification:
    """The ``train`` and ``test`` splits of an image-classification dataset (``image`` and
    ``label`` features): ``x`` float32 (N, H, W, C) scaled to [0, 1], ``y`` int32 (N,)."""
    builder = _builder(name, data_dir)
    features = builder.info.features
    if not {"image", "label"} <= set(features.keys()):
        raise DataError(
            f"{name} is not an image-classification dataset: expected the features 'image' and "
            f"'label', it has {sorted(features.keys())}. Use load_arrays({name!r}, split) for its raw features."
        )
    image, label = features["image"], features["label"]
    if None in image.shape or not np.issubdtype(image.np_dtype, np.integer) or not hasattr(label, "names"):
        raise DataError(
            f"{name}: expected images of one fixed shape with integer pixels and class labels; "
            f"got image {image.shape} {np.dtype(image.np_dtype).name} and label {type(label).__name__}"
        )
    _ensure_prepared(builder, resolve_manual_dir(manual_dir))
    _check_splits(builder, ["train", "test"])
    scale = np.float32(1.0 / np.iinfo(image.np_dtype).max)

    def split(which: str) -> dict:
        arrays = _split_arrays(builder, which)
        return {"x": arrays["image"].astype(np.float32) * scale, "y": arrays["label"].astype(np.int32)}

    return ImageClassification(split("train"), split("test"), label.num_classes, list(label.names))


# --- TensorFlow, quietly and off the GPUs -------------------------------------------------


@functools.cache
def _tfds():
    """tensorflow_datasets, imported on first use with TensorFlow quiet and kept off the GPUs."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # TF only decodes data here, so oneDNN's float kernels do not matter; turning them off
    # also silences the notice TF 2.21 prints at import even with TF_CPP_MIN_LOG_LEVEL=2.
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    import tensorflow as tf

    try:
        tf.config.set_visible_devices([], "GPU")
    except Exception:  # TF's devices were initialised already, or it has no GPU support
        pass
    import tensorflow_datasets

    return tensorflow_datasets


def _builder(name: str, data_dir):
    """TFDS's builder for ``name`` (``"mnist"``, ``"glue/sst2"``, ``"mnist:3.0.1"``)."""
    tfds = _tfds()
    try:
        return tfds.builder(name, data_dir=None if data_dir is None else os.fspath(data_dir))
    except tfds.core.DatasetNotFoundError:
        base = name.split(":")[0].split("/")[0].lower()
        close = difflib.get_close_matches(base, tfds.list_builders(with_community_datasets=False), n=5)
        hint = f"did you mean {', '.join(close)}?" if close else "tfds.list_builders() lists the names"
        raise DataError(f"TFDS has no dataset named {name!r}: {hint}") from None
    except (ValueError, AssertionError) as error:  # an unknown config or version
        reason = re.sub(r'^Failed to construct dataset .*?builder_kwargs ".*?": ', "", str(error)).strip()
        raise DataError(f"TFDS cannot build {name!r}: {reason}") from None


# --- preparation ----------------------------------------------------------------------------


def _ensure_prepared(builder, manual_dir: Path | None) -> None:
    """Prepare ``builder`` into its data dir unless that was done before.

    Offline from ``<manual_dir>/<builder name>/`` when ``manual_dir`` is given, else
    online. Datasets whose registered downloads are archives made from the originals
    (conll2003, glue/sst2) will need a third route that fills TFDS's download cache.
    """
    # What download_and_prepare itself checks (the variant folder appears only when complete);
    # builder.is_prepared() would also log a warning about every folder not made yet.
    if builder.data_path.exists():
        return
    if manual_dir is None:
        _prepare_online(builder)
    else:
        _prepare_from_folder(builder, manual_dir)


def _registered_files(builder) -> dict | None:
    """``{file name: UrlInfo(size, checksum)}`` of the files TFDS downloads for ``builder``,
    or None where TFDS registers no file name for some download."""
    infos = type(builder).url_infos or {}
    if not infos or not all(info.filename for info in infos.values()):
        return None
    return {info.filename: info for info in sorted(infos.values(), key=lambda info: info.filename)}


def _offline_hint(name: str, files) -> str:
    what = ", ".join(files) if files else "the original files"
    return f"put {what} in DIR/{name}/ and pass --manual-dir DIR or set {MANUAL_DIR_ENV}=DIR ({_SEE_README})"


def _prepare_from_folder(builder, manual_dir: Path) -> None:
    """Prepare from the original files in ``<manual_dir>/<builder name>/``; never downloads."""
    tfds = _tfds()
    from tensorflow_datasets.core.download.checksums import compute_url_info
    from tensorflow_datasets.core.download.download_manager import NonMatchingChecksumError

    name, folder = builder.name, manual_dir / builder.name
    files = _registered_files(builder)
    if files is None:
        raise DataError(
            f"jaxdl cannot yet prepare {name} from a local folder: TFDS registers no file names "
            f"for its downloads. Load it online (without --manual-dir and {MANUAL_DIR_ENV})."
        )
    missing = [f for f in files if not (folder / f).is_file()]
    if missing:
        if not folder.is_dir():
            found = f"there is no folder {folder} (a manual dir holds one folder per TFDS builder name)"
        elif len(missing) < len(files):
            found = f"{folder} lacks {', '.join(missing)}"
        else:
            found = f"{folder} holds none of the original files"
        raise DataError(
            f"cannot prepare {name} offline: {found}. To fix it, {_offline_hint(name, files)}; "
            f"or unset both to download them."
        )
    for file, info in files.items():
        size = (folder / file).stat().st_size
        if size != info.size:
            state = "is truncated" if size < info.size else "is not the original file"
            raise DataError(
                f"cannot prepare {name}: {folder / file} {state}: it has {size} bytes, the original "
                f"has {int(info.size)}. Copy the original file there again ({_SEE_README})."
            )
    config = tfds.download.DownloadConfig(manual_dir=os.fspath(folder), try_download_gcs=False)
    root = Path(builder.data_dir_root)
    root.mkdir(parents=True, exist_ok=True)
    # Extracted copies of the originals go to a scratch folder, removed afterwards.
    with tempfile.TemporaryDirectory(prefix=f"jaxdl-{name}-", dir=root) as scratch:
        try:
            builder.download_and_prepare(download_dir=scratch, download_config=config)
        except NonMatchingChecksumError:
            found = {f: compute_url_info(folder / f).checksum for f in files}
            bad = [
                f"{folder / f} is corrupt (its sha256 is {sha}, the original's {files[f].checksum})"
                for f, sha in found.items() if sha != files[f].checksum
            ]
            raise DataError(
                f"cannot prepare {name}: {'; '.join(bad) or 'a file does not match its registered checksum'}. "
                f"Copy the original file there again ({_SEE_README})."
            ) from None


def _unreachable_host(urls, timeout: float = 5.0) -> str | None:
    """The first download host no connection reaches (``"host:port (reason)"``), or None.

    A fast check before TFDS's own downloader, which retries for minutes without a
    network. Skipped behind a proxy, which alone knows what it can reach.
    """
    if urllib.request.getproxies():
        return None
    hosts = set()
    for url in urls:
        parts = urllib.parse.urlsplit(url)
        if parts.hostname and parts.scheme in ("http", "https"):
            hosts.add((parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)))
    for host, port in sorted(hosts):
        try:
            socket.create_connection((host, port), timeout=timeout).close()
        except OSError as error:
            return f"{host}:{port} cannot be reached ({error})"
    return None


def _prepare_online(builder) -> None:
    """Download the original files and prepare, as TFDS does; a failed download is a DataError."""
    tfds = _tfds()
    import requests
    from tensorflow_datasets.core.download.download_manager import NonMatchingChecksumError

    name, files = builder.name, _registered_files(builder)
    offline = f"Without a network, prepare it from the original files: {_offline_hint(name, files)}."
    reason = _unreachable_host(type(builder).url_infos or {})
    if reason is None:
        try:
            builder.download_and_prepare()
            return
        except (requests.RequestException, urllib.error.URLError, tfds.download.DownloadError) as error:
            reason = str(error).splitlines()[0]
        except NonMatchingChecksumError as error:
            raise DataError(
                f"a file downloaded for {name} does not match the checksum TFDS registers for it "
                f"(a broken download, or the file changed upstream): {str(error).splitlines()[0]} "
                f"Try again. {offline}"
            ) from None
    raise DataError(f"could not download {name}: {reason}. {offline}")


# --- reading --------------------------------------------------------------------------------


def _check_splits(builder, splits) -> None:
    """Every base split named in ``splits`` exists (when the builder knows its splits)."""
    known = list(builder.info.splits.keys())
    names = [part.split("[")[0].strip() for split in splits for part in split.split("+")]
    unknown = [n for n in names if n not in known]
    if known and unknown:
        raise DataError(f"{builder.name} has no split {', '.join(map(repr, unknown))}; its splits are {known}")


def _split_arrays(builder, split: str) -> dict[str, np.ndarray]:
    """All examples of ``split``, one numpy array per feature (nested like the features)."""
    tfds = _tfds()
    _check_splits(builder, [split])
    dataset = builder.as_dataset(split=split, shuffle_files=False)
    size = int(dataset.cardinality())  # TFDS knows it; negative only if unknown
    batches = list(tfds.as_numpy(dataset.batch(size if size > 0 else 8192)))
    if not batches:
        raise DataError(f"split {split!r} of {builder.name} holds no examples")
    if len(batches) == 1:
        return batches[0]
    return jax.tree.map(lambda *parts: np.concatenate(parts), *batches)
