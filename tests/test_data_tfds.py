"""jaxdl.data.tfds and jaxdl.data.text_datasets: TFDS datasets as numpy arrays and decoded
text, prepared online or from a folder of originals.

The mocked tests need no files and no network. The tests on real data need the original
files in ``$JAXDL_MANUAL_DIR/<folder>/`` (mnist, glue/SST-2, conll2003, tiny_shakespeare;
see the shared data folder's README.md) and skip without them; they prepare MNIST once per
module (about 20 s) and each text dataset once per session (a few seconds each).
"""

import csv
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import jaxdl.data.tfds as loader
from jaxdl.data import (
    DataError,
    label_names,
    load_arrays,
    load_image_classification,
    load_text_corpus,
    load_text_dataset,
    resolve_manual_dir,
)

MNIST_FILES = [
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
]
# Published with MNIST: how many of each digit the 10,000 test images show.
MNIST_TEST_LABEL_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
SST2_FILES = ["SST-2/train.tsv", "SST-2/dev.tsv", "SST-2/test.tsv"]
CONLL_FILES = ["train.txt", "valid.txt", "test.txt"]
NER_TAGS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]
# From the shared data folder's README.md: rows of SST-2's files; sentences and tokens of
# CoNLL-2003's; tiny_shakespeare's input.txt is 1,115,394 characters, split 90/5/5%.
SST2_SIZES = {"train": 67349, "validation": 872, "test": 1821}
CONLL_SIZES = {"train": (14041, 203621), "dev": (3250, 51362), "test": (3453, 46435)}
SHAKESPEARE_SIZES = {"train": 1003854, "validation": 55770, "test": 55770}


@pytest.fixture(scope="module")
def tfds():
    return loader._tfds()


@pytest.fixture
def offline(monkeypatch, tfds):
    """No manual dir from the environment, and no test ever reaches for the network."""
    monkeypatch.delenv(loader.MANUAL_DIR_ENV, raising=False)
    monkeypatch.setattr(loader, "_unreachable_host", lambda urls: None)


def _copy_originals(real, to, folder="mnist") -> Path:
    """A manual dir at ``to`` with a copy of ``real/<folder>/``; returns the copy of that folder."""
    shutil.copytree(real / folder, to / folder)
    return to / folder


def _flip_byte(path, at=1000):
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


def _leftovers(data_dir) -> list[str]:
    """Anything a failed preparation could leave for a later call to mistake for data."""
    return sorted(
        str(p.relative_to(data_dir)) for p in data_dir.rglob("*")
        if re.fullmatch(r"\d+\.\d+\.\d+", p.name) or "incomplete" in p.name or p.name.startswith("jaxdl-")
    )


# --- without files ----------------------------------------------------------------------------


@pytest.mark.slow  # a unit test of over 4 s on 2 cores: the full suite runs it
def test_importing_jaxdl_does_not_import_tensorflow():
    code = "import jaxdl, jaxdl.data.tfds, sys; assert 'tensorflow' not in sys.modules, 'tensorflow imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_resolve_manual_dir(monkeypatch, tmp_path):
    monkeypatch.delenv(loader.MANUAL_DIR_ENV, raising=False)
    assert resolve_manual_dir() is None
    monkeypatch.setenv(loader.MANUAL_DIR_ENV, str(tmp_path / "env"))
    assert resolve_manual_dir() == tmp_path / "env"
    assert resolve_manual_dir(str(tmp_path / "arg")) == tmp_path / "arg"
    monkeypatch.setenv(loader.MANUAL_DIR_ENV, "")
    assert resolve_manual_dir() is None


@pytest.mark.parametrize(
    "name, shape, first_class",
    # cifar10 reads its class names from the downloaded files, so mocked it has none but numbers
    [("mnist", (28, 28, 1), "0"), ("fashion_mnist", (28, 28, 1), "T-shirt/top"), ("cifar10", (32, 32, 3), "0")],
)
def test_image_classification_from_mocked_data(offline, tfds, tmp_path, name, shape, first_class):
    with tfds.testing.mock_data(num_examples=6):
        data = load_image_classification(name, data_dir=tmp_path)
    assert data.num_classes == 10 and len(data.class_names) == 10 and data.class_names[0] == first_class
    for split in (data.train, data.test):
        assert split["x"].shape == (6, *shape) and split["x"].dtype == np.float32
        assert 0.0 <= split["x"].min() and split["x"].max() <= 1.0 and split["x"].max() > 0.5
        assert split["y"].shape == (6,) and split["y"].dtype == np.int32
        assert ((0 <= split["y"]) & (split["y"] < 10)).all()


def test_a_dataset_without_image_and_label_is_refused(offline, tfds, tmp_path):
    with tfds.testing.mock_data(num_examples=2):
        with pytest.raises(DataError, match=r"expected the features 'image' and 'label', it has \['text'\]"):
            load_image_classification("tiny_shakespeare", data_dir=tmp_path)


def test_an_unknown_name_suggests_close_ones(offline, tmp_path):
    with pytest.raises(DataError, match="no dataset named 'mnistt': did you mean mnist"):
        load_arrays("mnistt", "train", data_dir=tmp_path)


@pytest.mark.parametrize(
    "name, folder, files",
    [("mnist", "mnist", MNIST_FILES), ("glue/sst2", "glue", SST2_FILES), ("conll2003", "conll2003", CONLL_FILES)],
)
@pytest.mark.parametrize("make_folder", [True, False])
def test_a_manual_dir_without_the_files_names_folder_and_files(offline, tmp_path, make_folder, name, folder, files):
    manual_dir = tmp_path / "manual"
    (manual_dir / folder if make_folder else manual_dir).mkdir(parents=True)
    with pytest.raises(DataError) as error:
        load_arrays(name, "train", data_dir=tmp_path / "data", manual_dir=manual_dir)
    message = str(error.value)
    assert message.startswith(f"cannot prepare {name} offline: ")
    assert str(manual_dir / folder) in message and loader.MANUAL_DIR_ENV in message and "--manual-dir" in message
    assert all(f in message for f in files)
    if name != "mnist":  # the files are those of the archive TFDS would download
        assert loader._ARCHIVES[name].url in message


def test_a_manual_dir_with_some_files_names_those_it_lacks(offline, tmp_path):
    (tmp_path / "manual" / "glue" / "SST-2").mkdir(parents=True)
    (tmp_path / "manual" / "glue" / "SST-2" / "train.tsv").write_text("sentence\tlabel\n")
    with pytest.raises(DataError, match=r"\S*/manual/glue lacks SST-2/dev.tsv, SST-2/test.tsv\. To fix it, put SST-2/train.tsv"):
        load_text_dataset("glue/sst2", "train", data_dir=tmp_path / "data", manual_dir=tmp_path / "manual")


@pytest.mark.parametrize(
    "name, host, files",
    [("mnist", "storage.googleapis.com", MNIST_FILES), ("conll2003", "data.deepai.org", CONLL_FILES)],
)
def test_an_unreachable_network_fails_fast_with_the_offline_route(monkeypatch, tfds, tmp_path, name, host, files):
    monkeypatch.delenv(loader.MANUAL_DIR_ENV, raising=False)
    monkeypatch.setattr(loader.urllib.request, "getproxies", lambda: {})

    def no_network(address, timeout=None):
        raise OSError("[Errno -2] Name or service not known")

    def never(*args, **kwargs):
        raise AssertionError("TFDS's downloader ran after the network check failed")

    monkeypatch.setattr(loader.socket, "create_connection", no_network)
    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", never)
    with pytest.raises(DataError) as error:
        load_arrays(name, "test", data_dir=tmp_path)
    message = str(error.value)
    assert message.startswith(f"could not download {name}: {host}:443 cannot be reached")
    assert all(f in message for f in files) and "--manual-dir" in message


def test_a_download_failure_inside_tfds_becomes_a_data_error(offline, monkeypatch, tfds, tmp_path):
    import requests

    def fail(self, resource):
        raise requests.ConnectionError(f"Max retries exceeded with url: {resource.url}")

    monkeypatch.setattr(tfds.download.DownloadManager, "_download", fail)
    with pytest.raises(DataError, match="could not download mnist: Max retries exceeded") as error:
        load_arrays("mnist", "test", data_dir=tmp_path)
    assert "train-images-idx3-ubyte.gz" in str(error.value)
    assert _leftovers(tmp_path) == []


def test_a_broken_download_becomes_a_data_error(offline, monkeypatch, tfds, tmp_path):
    from tensorflow_datasets.core.download.download_manager import NonMatchingChecksumError

    def broken(self, resource):
        raise NonMatchingChecksumError(f"Artifact {resource.url}, downloaded to /tmp/x, has wrong checksum:\n* Expected: ...")

    monkeypatch.setattr(tfds.download.DownloadManager, "_download", broken)
    with pytest.raises(DataError, match="a file downloaded for mnist does not match the checksum TFDS registers"):
        load_arrays("mnist", "test", data_dir=tmp_path)
    assert _leftovers(tmp_path) == []


def test_an_unknown_config_is_a_data_error(offline, tmp_path):
    with pytest.raises(DataError, match="TFDS cannot build 'mnist/foo': BuilderConfig foo not found"):
        load_arrays("mnist/foo", "train", data_dir=tmp_path)


def test_conll2003_from_mocked_data_decodes_tokens_and_tag_names(offline, tfds, tmp_path):
    with tfds.testing.mock_data(num_examples=4):
        data = load_text_dataset("conll2003", "train", data_dir=tmp_path)
    names = label_names("conll2003", data_dir=tmp_path)
    assert sorted(data) == ["chunks", "ner", "pos", "tokens"]
    for key, column in data.items():
        assert column.shape == (4,) and column.dtype == object
        assert all(isinstance(row, list) and row and all(isinstance(item, str) for item in row) for row in column)
        if key != "tokens":
            assert set().union(*column) <= set(names[key])


def test_sst2_from_mocked_data_decodes_sentences(offline, tfds, tmp_path):
    with tfds.testing.mock_data(num_examples=5):
        data = load_text_dataset("glue/sst2", "validation", data_dir=tmp_path)
    assert sorted(data) == ["idx", "label", "sentence"]
    assert data["sentence"].shape == (5,) and data["sentence"].dtype == object
    assert all(isinstance(sentence, str) and sentence for sentence in data["sentence"])
    for key in ("label", "idx"):
        assert data[key].shape == (5,) and np.issubdtype(data[key].dtype, np.integer)
    assert set(data["label"].tolist()) <= {0, 1}


def test_a_corpus_from_mocked_data_is_one_str(offline, tfds, tmp_path):
    with tfds.testing.mock_data(num_examples=1):  # one random text of 10 to 19 characters
        text = load_text_corpus("tiny_shakespeare", "validation", data_dir=tmp_path)
    assert isinstance(text, str) and 10 <= len(text) < 20


def test_a_dataset_without_the_right_text_features_is_refused_before_preparing(offline, tmp_path):
    with pytest.raises(DataError, match=r"mnist is not a text dataset: none of its features \['image', 'label'\] is text"):
        load_text_dataset("mnist", "train", data_dir=tmp_path)
    with pytest.raises(DataError, match=r"glue/sst2 is not a corpus: expected a single text feature 'text', it has \['idx', 'label', 'sentence'\]"):
        load_text_corpus("glue/sst2", "train", data_dir=tmp_path)
    assert _leftovers(tmp_path) == []


def test_label_names_come_from_tfds_without_preparing(tfds, tmp_path):
    names = label_names("conll2003", data_dir=tmp_path)
    assert sorted(names) == ["chunks", "ner", "pos"] and names["ner"] == NER_TAGS
    assert names["chunks"][:3] == ["O", "B-ADJP", "I-ADJP"] and len(names["pos"]) == 47
    assert label_names("glue/sst2", data_dir=tmp_path) == {"label": ["negative", "positive"]}
    assert label_names("tiny_shakespeare", data_dir=tmp_path) == {}
    assert _leftovers(tmp_path) == []


# --- with MNIST's original files ----------------------------------------------------------------


def test_a_truncated_file_is_named(tmp_path, originals):
    folder = _copy_originals(originals("mnist"), tmp_path / "manual")
    with open(folder / "train-labels-idx1-ubyte.gz", "r+b") as f:
        f.truncate(10000)
    with pytest.raises(DataError, match=r"cannot prepare mnist: \S*/train-labels-idx1-ubyte.gz is truncated: it has 10000 bytes, the original has 28881"):
        load_image_classification("mnist", data_dir=tmp_path / "data", manual_dir=tmp_path / "manual")


def test_a_corrupt_file_is_named_and_nothing_is_left_half_prepared(tmp_path, originals):
    folder = _copy_originals(originals("mnist"), tmp_path / "manual")
    _flip_byte(folder / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(DataError, match=r"cannot prepare mnist: \S*/t10k-labels-idx1-ubyte.gz is corrupt \(its sha256 is ") as error:
        load_arrays("mnist", "test", data_dir=tmp_path / "data", manual_dir=tmp_path / "manual")
    assert "train-images" not in str(error.value)
    assert _leftovers(tmp_path / "data") == []


@pytest.fixture(scope="module")
def mnist(tmp_path_factory, originals):
    """``(data_dir, data)``: MNIST prepared from its original files into a fresh data dir,
    right after a failed attempt there with a corrupt file (which must not get in the way)."""
    real = originals("mnist")
    data_dir = tmp_path_factory.mktemp("tfds")
    bad = tmp_path_factory.mktemp("corrupt")
    _flip_byte(_copy_originals(real, bad) / "train-images-idx3-ubyte.gz", at=5_000_000)
    with pytest.raises(DataError, match="corrupt"):
        load_image_classification("mnist", data_dir=data_dir, manual_dir=bad)
    return data_dir, load_image_classification("mnist", data_dir=data_dir, manual_dir=real)


def test_mnist_shapes_types_and_range(mnist):
    _, data = mnist
    assert data.num_classes == 10 and data.class_names == [str(d) for d in range(10)]
    for split, n in ((data.train, 60000), (data.test, 10000)):
        assert split["x"].shape == (n, 28, 28, 1) and split["x"].dtype == np.float32
        assert split["x"].min() == 0.0 and split["x"].max() == 1.0
        assert split["y"].shape == (n,) and split["y"].dtype == np.int32
        assert set(np.unique(split["y"])) == set(range(10))


def test_mnist_matches_its_published_statistics(mnist):
    _, data = mnist
    assert np.bincount(data.test["y"]).tolist() == MNIST_TEST_LABEL_COUNTS
    # The mean and standard deviation every MNIST tutorial normalises with.
    assert data.train["x"].mean() == pytest.approx(0.1307, abs=1e-4)
    assert data.train["x"].std() == pytest.approx(0.3081, abs=1e-4)


def test_prepared_mnist_is_reused_without_the_files(mnist, monkeypatch, tfds):
    data_dir, data = mnist
    monkeypatch.delenv(loader.MANUAL_DIR_ENV, raising=False)

    def never(*args, **kwargs):
        raise AssertionError("prepared again")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", never)
    monkeypatch.setattr(loader, "_unreachable_host", never)
    arrays = load_arrays("mnist", "test", data_dir=data_dir)
    assert arrays["image"].shape == (10000, 28, 28, 1) and arrays["image"].dtype == np.uint8
    np.testing.assert_array_equal(arrays["label"], data.test["y"])
    assert load_arrays("mnist", "train[:5%]", data_dir=data_dir)["label"].shape == (3000,)
    with pytest.raises(DataError, match=r"mnist has no split 'valid'; its splits are \['train', 'test'\]"):
        load_arrays("mnist", "valid", data_dir=data_dir)


# --- with the text datasets' original files -----------------------------------------------------


def test_a_truncated_sst2_file_is_named(tmp_path, originals):
    folder = _copy_originals(originals("glue/SST-2"), tmp_path / "manual", "glue")
    with open(folder / "SST-2" / "dev.tsv", "r+b") as f:
        f.truncate(50000)
    with pytest.raises(
        DataError,
        match=r"cannot prepare glue/sst2: \S*/manual/glue/SST-2/dev.tsv is truncated: it has 50000 bytes, the original "
        r"has 94931\. Copy the originals there again \(they are the files in https://dl.fbaipublicfiles.com/glue/data/SST-2.zip",
    ):
        load_text_dataset("glue/sst2", "validation", data_dir=tmp_path / "data", manual_dir=tmp_path / "manual")
    assert _leftovers(tmp_path / "data") == []


def test_a_corrupt_conll2003_file_is_named_and_nothing_is_prepared(tmp_path, originals):
    folder = _copy_originals(originals("conll2003"), tmp_path / "manual", "conll2003")
    _flip_byte(folder / "valid.txt", at=400_000)
    with pytest.raises(
        DataError,
        match=r"cannot prepare conll2003: \S*/conll2003/valid.txt is corrupt \(its sha256 is [0-9a-f]{64}, the original's b39e347c",
    ) as error:
        load_text_dataset("conll2003", "dev", data_dir=tmp_path / "data", manual_dir=tmp_path / "manual")
    assert "train.txt" not in str(error.value) and "test.txt" not in str(error.value)
    assert _leftovers(tmp_path / "data") == []


def test_sst2_splits_hold_the_rows_of_its_files(sst2_data_dir, originals):
    folder = originals("glue/SST-2") / "glue" / "SST-2"
    for split, file in (("train", "train.tsv"), ("validation", "dev.tsv"), ("test", "test.tsv")):
        with open(folder / file, encoding="utf-8") as f:
            rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
        data = load_text_dataset("glue/sst2", split, data_dir=sst2_data_dir)
        assert len(rows) == len(data["sentence"]) == SST2_SIZES[split]
        order = np.argsort(data["idx"])  # TFDS stores the rows shuffled; idx is the row number
        assert data["idx"][order].tolist() == list(range(len(rows)))
        assert data["sentence"][order].tolist() == [row["sentence"] for row in rows]
        labels = [-1] * len(rows) if split == "test" else [int(row["label"]) for row in rows]
        assert data["label"][order].tolist() == labels


def test_conll2003_sentences_tokens_and_iob2_tags(conll2003_data_dir):
    raw = load_arrays("conll2003", "dev", data_dir=conll2003_data_dir)
    assert [len(tokens) for tokens in raw["tokens"]].count(0) == 1  # the empty example TFDS adds
    assert raw["ner"].dtype == object and raw["ner"][0].dtype == np.int64
    names = label_names("conll2003", data_dir=conll2003_data_dir)
    for split, (sentences, tokens) in CONLL_SIZES.items():
        data = load_text_dataset("conll2003", split, data_dir=conll2003_data_dir)
        lengths = [len(row) for row in data["tokens"]]
        assert len(lengths) == sentences and sum(lengths) == tokens and min(lengths) >= 1
        assert all(isinstance(token, str) for row in data["tokens"][:100] for token in row)
        for key in ("pos", "chunks", "ner"):
            assert [len(row) for row in data[key]] == lengths
            assert set().union(*data[key]) <= set(names[key])
        for tags in data["ner"]:  # IOB2: every entity starts with B-X, and I-X only continues X
            for previous, tag in zip(["O", *tags], tags):
                assert not tag.startswith("I-") or previous[2:] == tag[2:], tags


def test_tiny_shakespeare_splits_give_the_file_back(tiny_shakespeare_data_dir, originals):
    text = (originals("tiny_shakespeare") / "tiny_shakespeare" / "input.txt").read_text(encoding="utf-8")
    splits = {split: load_text_corpus("tiny_shakespeare", split, data_dir=tiny_shakespeare_data_dir) for split in SHAKESPEARE_SIZES}
    assert {split: len(part) for split, part in splits.items()} == SHAKESPEARE_SIZES
    assert len(text) == 1115394 and "".join(splits.values()) == text and text.startswith("First Citizen:")
    assert load_text_corpus("tiny_shakespeare", "train+validation+test", data_dir=tiny_shakespeare_data_dir) == text


@pytest.mark.slow
@pytest.mark.parametrize(
    "prepared, name, split, size",
    [
        ("sst2_data_dir", "glue/sst2", "validation", 872),
        ("conll2003_data_dir", "conll2003", "test", 3453),
        ("tiny_shakespeare_data_dir", "tiny_shakespeare", "test", 1),
    ],
)
def test_prepared_text_data_are_reused_without_the_files(request, monkeypatch, tfds, prepared, name, split, size):
    data_dir = request.getfixturevalue(prepared)
    monkeypatch.delenv(loader.MANUAL_DIR_ENV, raising=False)

    def never(*args, **kwargs):
        raise AssertionError("prepared again")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", never)
    monkeypatch.setattr(loader, "_unreachable_host", never)
    assert {len(column) for column in load_text_dataset(name, split, data_dir=data_dir).values()} == {size}
