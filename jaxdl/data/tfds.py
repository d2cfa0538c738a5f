"""Datasets through the real TFDS builders, prepared once and returned as numpy arrays.

Online, TFDS downloads the original files as usual. Offline, they come from a local
folder given by ``--manual-dir`` or ``$JAXDL_MANUAL_DIR`` that holds one folder per TFDS
builder name (``<manual_dir>/mnist/train-images-idx3-ubyte.gz``, ...), each checked by
size and sha256 before TFDS reads it. Where TFDS downloads an archive (conll2003,
glue/sst2), the folder holds the files as the archive does, and jaxdl zips them into
TFDS's download cache. Preparation writes into ``data_dir`` (default: TFDS's own, which
honours ``$TFDS_DATA_DIR``) and later calls read from there without the original files.

TensorFlow is imported only when a dataset is loaded, with its GPUs hidden so that it
never takes memory JAX needs.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import itertools
import os
import re
import socket
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
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
    """The whole ``split`` of TFDS dataset ``name`` as numpy arrays, one per feature (text as
    bytes; a feature whose shape varies as an object array of per-example arrays).

    Prepares the dataset into ``data_dir`` first if needed: from
    ``<manual_dir>/<builder name>/`` when a manual dir is given (see
    :func:`resolve_manual_dir`), else by downloading. ``split`` takes TFDS's syntax
    (``"train"``, ``"train[:10%]"``).
    """
    builder = _builder(name, data_dir)
    _ensure_prepared(builder, resolve_manual_dir(manual_dir))
    return _split_arrays(builder, split)


def load_image_classification(
    name: str = "mnist", *, data_dir=None, manual_dir=None, train_examples: int | None = None
) -> ImageClassification:
    """The ``train`` and ``test`` splits of an image-classification dataset (``image`` and
    ``label`` features): ``x`` float32 (N, H, W, C) scaled to [0, 1], ``y`` int32 (N,).
    ``train_examples`` reads only the first that many training examples."""
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

    train = "train" if train_examples is None else f"train[:{train_examples}]"
    return ImageClassification(split(train), split("test"), label.num_classes, list(label.names))


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


class _Archive(NamedTuple):
    """A download TFDS registers as an archive the publisher made: jaxdl knows the files in it."""

    url: str
    files: dict  # {path in the archive and in <manual_dir>/<builder name>/: (size, sha256)}

    @property
    def fname(self) -> str:
        return self.url.rsplit("/", 1)[-1]


# TFDS checks only the archive's checksum (none for conll2003), so jaxdl checks each file in it.
# The conll2003 files are the shared data folder's copies, which lack the first line
# ("-DOCSTART- -X- -X- O") of the files in the archive; the parser skips that line.
_ARCHIVES = {
    "conll2003": _Archive(
        "https://data.deepai.org/conll2003.zip",
        {
            "train.txt": (3283399, "6ab3362ffcf5769e98ff06aae44b6956f3db51882377b32ebe1f242b5d352ea2"),
            "valid.txt": (827422, "b39e347ceffa45fa3d156295f70e254b245c581c4eb20b23f6185ea1db006375"),
            "test.txt": (748074, "5589685853ffa4d5f290c8510ee175a1dc541a267c05d0e17d60d7d18a2774c5"),
        },
    ),
    "glue/sst2": _Archive(
        "https://dl.fbaipublicfiles.com/glue/data/SST-2.zip",
        {
            "SST-2/train.tsv": (3806081, "48eac26399f8456935f81dd9e3a745c1430adb6c62e233ccfe22db4a0d15d1d1"),
            "SST-2/dev.tsv": (94931, "54a9c12c77e402fc14d6a66a506f24d999f596b0176eb777c972cccc2f9cc4b0"),
            "SST-2/test.tsv": (197335, "69a938605609b3e6663b4487918fe1565eb293734e6e520d0366d1d412fd2a13"),
        },
    ),
}


def _name(builder) -> str:
    """The name users type for ``builder``: ``"mnist"``, ``"glue/sst2"`` (the config where there are several)."""
    config = builder.builder_config
    return f"{builder.name}/{config.name}" if config and len(builder.BUILDER_CONFIGS) > 1 else builder.name


def _ensure_prepared(builder, manual_dir: Path | None) -> None:
    """Prepare ``builder`` into its data dir unless that was done before: offline from
    ``<manual_dir>/<builder name>/`` when ``manual_dir`` is given, else online."""
    # What download_and_prepare itself checks (the variant folder appears only when complete);
    # builder.is_prepared() would also log a warning about every folder not made yet.
    if builder.data_path.exists():
        return
    if manual_dir is None:
        _prepare_online(builder)
    else:
        _prepare_from_folder(builder, manual_dir)


def _originals(builder) -> dict | None:
    """``{path: (size, sha256)}`` of the original files the offline route reads from
    ``<manual_dir>/<builder name>/``, or None where TFDS registers no file name for some download."""
    archive = _ARCHIVES.get(_name(builder))
    if archive is not None:
        return archive.files
    infos = type(builder).url_infos or {}
    if not infos or not all(info.filename for info in infos.values()):
        return None
    return {info.filename: (int(info.size), info.checksum) for info in sorted(infos.values(), key=lambda i: i.filename)}


def _origin(builder) -> str:
    """Where the original files of ``builder`` come from, for error messages."""
    archive = _ARCHIVES.get(_name(builder))
    return _SEE_README if archive is None else f"they are the files in {archive.url}, laid out as there"


def _offline_hint(builder) -> str:
    files = _originals(builder)
    what = ", ".join(files) if files else "the original files"
    return (
        f"put {what} in DIR/{builder.name}/ and pass --manual-dir DIR or set {MANUAL_DIR_ENV}=DIR "
        f"({_origin(builder)})"
    )


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _check_originals(builder, folder: Path, files: dict) -> None:
    """Every file of ``files`` is in ``folder`` with its size and sha256, else a DataError naming what is not."""
    name = _name(builder)
    missing = [f for f in files if not (folder / f).is_file()]
    if missing:
        if not folder.is_dir():
            found = f"there is no folder {folder} (a manual dir holds one folder per TFDS builder name)"
        elif len(missing) < len(files):
            found = f"{folder} lacks {', '.join(missing)}"
        else:
            found = f"{folder} holds none of the original files"
        raise DataError(
            f"cannot prepare {name} offline: {found}. To fix it, {_offline_hint(builder)}; "
            f"or unset both to download them."
        )
    problems = []
    for file, (size, sha256) in files.items():
        path = folder / file
        if (found := path.stat().st_size) != size:
            state = "is truncated" if found < size else "is not the original file"
            problems.append(f"{path} {state}: it has {found} bytes, the original has {size}")
        elif (found := _sha256(path)) != sha256:
            problems.append(f"{path} is corrupt (its sha256 is {found}, the original's {sha256})")
    if problems:
        raise DataError(f"cannot prepare {name}: {'; '.join(problems)}. Copy the originals there again ({_origin(builder)}).")


def _fill_download_cache(builder, archive: _Archive, folder: Path, download_dir: Path) -> None:
    """Zip the files of ``archive`` from ``folder`` into TFDS's download cache in ``download_dir``,
    with the ``.INFO`` file that makes TFDS take it for a finished download of ``archive.url``."""
    from tensorflow_datasets.core.download import checksums, resource

    registered = (type(builder).url_infos or {}).get(archive.url)  # none for conll2003: TFDS trusts the .INFO
    checksum = registered.checksum if registered else None  # TFDS's cache names files by it
    path = download_dir / builder.name / resource.get_dl_fname(archive.url, checksum)
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zipped:  # stored, not compressed: TFDS unzips it at once
        for file in archive.files:
            zipped.write(folder / file, arcname=file)
    info = checksums.compute_url_info(path)
    resource.write_info_file(
        url=archive.url, path=path, dataset_name=builder.name, original_fname=archive.fname,
        url_info=checksums.UrlInfo(size=info.size, checksum=info.checksum, filename=archive.fname),
    )


def _prepare_from_folder(builder, manual_dir: Path) -> None:
    """Prepare from the original files in ``<manual_dir>/<builder name>/``; never downloads."""
    tfds = _tfds()
    folder, files = manual_dir / builder.name, _originals(builder)
    if files is None:
        raise DataError(
            f"jaxdl cannot yet prepare {_name(builder)} from a local folder: TFDS registers no file names "
            f"for its downloads. Load it online (without --manual-dir and {MANUAL_DIR_ENV})."
        )
    _check_originals(builder, folder, files)
    archive = _ARCHIVES.get(_name(builder))
    # TFDS reads a registered file name from its manual dir, and an archive from its download cache.
    manual = None if archive else os.fspath(folder)
    config = tfds.download.DownloadConfig(manual_dir=manual, try_download_gcs=False)
    root = Path(builder.data_dir_root)
    root.mkdir(parents=True, exist_ok=True)
    # Downloads and extracted copies go to a scratch folder, removed afterwards.
    with tempfile.TemporaryDirectory(prefix=f"jaxdl-{builder.name}-", dir=root) as scratch:
        if archive:
            _fill_download_cache(builder, archive, folder, Path(scratch))
        builder.download_and_prepare(download_dir=scratch, download_config=config)


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

    name, archive = _name(builder), _ARCHIVES.get(_name(builder))
    offline = f"Without a network, prepare it from the original files: {_offline_hint(builder)}."
    reason = _unreachable_host([archive.url] if archive else type(builder).url_infos or {})
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
        raise DataError(f"{_name(builder)} has no split {', '.join(map(repr, unknown))}; its splits are {known}")


def _split_arrays(builder, split: str) -> dict[str, np.ndarray]:
    """All examples of ``split``, one numpy array per feature (nested like the features); a
    feature whose shape varies (token sequences) is an object array of per-example arrays."""
    tfds = _tfds()
    import tensorflow as tf

    _check_splits(builder, [split])
    dataset = builder.as_dataset(split=split, shuffle_files=False)
    size = int(dataset.cardinality())  # TFDS knows it; negative only if unknown
    varying = any(not spec.shape.is_fully_defined() for spec in tf.nest.flatten(dataset.element_spec))
    batched = (dataset.ragged_batch if varying else dataset.batch)(size if size > 0 else 8192)
    batches = [jax.tree.map(_unragged, batch) for batch in tfds.as_numpy(batched)]
    if not batches:
        raise DataError(f"split {split!r} of {_name(builder)} holds no examples")
    if len(batches) == 1:
        return batches[0]
    return jax.tree.map(lambda *parts: np.concatenate(parts), *batches)


def _unragged(batch):
    """A batch of TF's ragged tensor as an object array of per-example numpy arrays; others as they are."""
    import tensorflow as tf

    if not isinstance(batch, tf.RaggedTensor):
        return batch
    values = _unragged(batch.values) if isinstance(batch.values, tf.RaggedTensor) else batch.values.numpy()
    bounds = batch.row_splits.numpy()
    return _object_array([values[start:stop] for start, stop in itertools.pairwise(bounds)])


def _object_array(items) -> np.ndarray:
    """A 1-D numpy object array of ``items`` (numpy would stack items of equal length into 2-D)."""
    array = np.empty(len(items), dtype=object)
    for i, item in enumerate(items):
        array[i] = item
    return array
