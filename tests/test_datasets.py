"""Tests of tf_discrete.datasets on tiny raw-format fixtures, without network.

Fixtures are written in the original formats (gzip IDX, MATLAB v5, .amat)
into temporary manual directories; the train/valid cuts are shrunk to their
size through the module-level ``datasets.SPECS``. One test reads the real
files in ``../shared/data`` beside the checkout when they are present.
"""

import dataclasses
import fcntl
import gzip
import os
import pathlib
import socket
import struct
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import scipy.io
import tensorflow as tf
import tensorflow_datasets as tfds

from tests import support
from tf_discrete import datasets

# The raw files: $TF_DISCRETE_MANUAL_DIR (set by the Makefile and passed by
# Bazel), else ../shared/data beside the checkout.
SHARED_DATA = pathlib.Path(
    os.environ.get("TF_DISCRETE_MANUAL_DIR") or
    os.path.join(os.path.dirname(support.ROOT), "shared", "data"))

# Fixture sizes. MNIST-style: train = first MNIST_CUT of the train file.
MNIST_TRAIN, MNIST_TEST, MNIST_CUT = 24, 8, 20
OMNIGLOT_TRAIN, OMNIGLOT_TEST, OMNIGLOT_VALID = 12, 5, 3
STATIC_SIZES = {"train": 10, "valid": 4, "test": 6}

SMALL_SPECS = {
    "dynamic_mnist": dict(valid_cut=MNIST_CUT),
    "fashion_mnist": dict(valid_cut=MNIST_CUT),
    "omniglot": dict(valid_cut=-OMNIGLOT_VALID),
}


# --------------------------------------------------------------------------
# Raw-format writers.
# --------------------------------------------------------------------------


def write_idx_images(path, pixels, magic=0x803):
  """Writes uint8 ``[N, 28, 28]`` images as a gzip IDX file."""
  header = struct.pack(">4I", magic, len(pixels), 28, 28)
  with gzip.open(path, "wb") as f:
    f.write(header + np.asarray(pixels, np.uint8).tobytes())


def write_manual_root(root, rng):
  """Writes all four datasets; returns the images written, by dataset."""
  written = {}
  for folder in ("mnist", "fashion_mnist"):
    (root / folder).mkdir(parents=True)
    train = rng.integers(0, 256, (MNIST_TRAIN, 28, 28), dtype=np.uint8)
    test = rng.integers(0, 256, (MNIST_TEST, 28, 28), dtype=np.uint8)
    write_idx_images(root / folder / "train-images-idx3-ubyte.gz", train)
    write_idx_images(root / folder / "t10k-images-idx3-ubyte.gz", test)
    written[folder] = (train.reshape(-1, 784), test.reshape(-1, 784))
  (root / "omniglot").mkdir()
  # Multiples of 1/16 survive the float32 storage exactly.
  data = rng.integers(0, 17, (784, OMNIGLOT_TRAIN)) / 16
  testdata = rng.integers(0, 17, (784, OMNIGLOT_TEST)) / 16
  scipy.io.savemat(root / "omniglot" / "omniglot28.mat",
                   {"data": data, "testdata": testdata})
  written["omniglot"] = (data.T, testdata.T)
  (root / "binarized_mnist").mkdir()
  written["binarized_mnist"] = {}
  for split, size in STATIC_SIZES.items():
    x = rng.integers(0, 2, (size, 784), dtype=np.uint8)
    scipy.io.savemat(root / "binarized_mnist" / f"binarized_mnist_{split}.mat",
                     {"X": x})
    written["binarized_mnist"][split] = x
  return written


def sorted_rows(images):
  return images[np.lexsort(images.T[::-1])]


# --------------------------------------------------------------------------
# Fixtures.
# --------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def no_network_no_env(monkeypatch):
  """Any DNS lookup fails the test; the environment variables start unset."""

  def refuse(*args, **kwargs):
    raise AssertionError(f"unexpected network access: {args}")

  monkeypatch.setattr(socket, "getaddrinfo", refuse)
  monkeypatch.delenv(datasets.MANUAL_DIR_ENV, raising=False)
  monkeypatch.delenv(datasets.DATA_DIR_ENV, raising=False)


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
  """A manual-directory root of tiny fixtures and the arrays in it."""
  root = tmp_path_factory.mktemp("manual")
  return root, write_manual_root(root, np.random.default_rng(0))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return tmp_path_factory.mktemp("tfds")


@pytest.fixture
def small_specs(monkeypatch):
  for name, changes in SMALL_SPECS.items():
    monkeypatch.setitem(datasets.SPECS, name,
                        dataclasses.replace(datasets.SPECS[name], **changes))


@pytest.fixture
def load_small(raw, data_dir, small_specs):
  del small_specs  # Active for the test.
  root, _ = raw
  return lambda name: datasets.load(name, manual_dir=root, data_dir=data_dir)


def grey_splits(train, name="grey", dynamic=True):
  """Splits around given training images, for pipeline tests."""
  train = np.asarray(train, np.float32)
  return datasets.Splits(name=name, train=train, valid=train[:2],
                         test=train[:3], train_mean=train.mean(0),
                         dynamic=dynamic)


# --------------------------------------------------------------------------
# Loading.
# --------------------------------------------------------------------------


def test_available():
  assert datasets.available() == [
      "dynamic_mnist", "fashion_mnist", "omniglot", "static_mnist"]


@pytest.mark.parametrize("name,folder", [("dynamic_mnist", "mnist"),
                                         ("fashion_mnist", "fashion_mnist")])
def test_mnist_style_splits(load_small, raw, name, folder):
  train_file, test_file = raw[1][folder]
  splits = load_small(name)
  assert splits.name == name and splits.dynamic
  assert splits.train.shape == (MNIST_CUT, 784)
  assert splits.valid.shape == (MNIST_TRAIN - MNIST_CUT, 784)
  assert splits.test.shape == (MNIST_TEST, 784)
  for array in (splits.train, splits.valid, splits.test, splits.train_mean):
    assert array.dtype == np.float32
  # tfds stores examples in its own (hashed) order: compare as sets of rows.
  expected = (train_file / np.float32(255)).astype(np.float32)
  np.testing.assert_array_equal(
      sorted_rows(np.concatenate([splits.train, splits.valid])),
      sorted_rows(expected))
  np.testing.assert_array_equal(sorted_rows(splits.test),
                                sorted_rows(test_file / np.float32(255)))
  np.testing.assert_allclose(splits.train_mean, splits.train.mean(0),
                             rtol=1e-6)


def test_omniglot_keeps_file_order_and_grey_levels(load_small, raw):
  data, testdata = raw[1]["omniglot"]
  splits = load_small("omniglot")
  assert splits.dynamic
  np.testing.assert_array_equal(splits.train, data[:-OMNIGLOT_VALID])
  np.testing.assert_array_equal(splits.valid, data[-OMNIGLOT_VALID:])
  np.testing.assert_array_equal(splits.test, testdata)


def test_omniglot_prefers_iwae_file_and_unflattens_it_column_major(
    tmp_path, raw, small_specs):
  del small_specs
  folder = tmp_path / "manual" / "omniglot"
  folder.mkdir(parents=True)
  (folder / "omniglot28.mat").write_bytes(
      (raw[0] / "omniglot" / "omniglot28.mat").read_bytes())
  rng = np.random.default_rng(3)
  images = rng.integers(0, 5, (OMNIGLOT_TRAIN + OMNIGLOT_TEST, 28, 28)) / 4
  # MATLAB flattens each image column-major.
  columns = images.transpose(0, 2, 1).reshape(len(images), 784).T
  scipy.io.savemat(folder / "chardata.mat",
                   {"data": columns[:, :OMNIGLOT_TRAIN],
                    "testdata": columns[:, OMNIGLOT_TRAIN:]})
  splits = datasets.load("omniglot", manual_dir=tmp_path / "manual",
                         data_dir=tmp_path / "tfds")
  np.testing.assert_array_equal(
      splits.test, images[OMNIGLOT_TRAIN:].reshape(-1, 784))


def test_static_mnist_is_binary_and_not_rebinarized(load_small, raw):
  written = raw[1]["binarized_mnist"]
  splits = load_small("static_mnist")
  assert not splits.dynamic
  for split in ("train", "valid", "test"):
    images = getattr(splits, split)
    np.testing.assert_array_equal(sorted_rows(images),
                                  sorted_rows(written[split]))
  assert splits.fixed_eval_set("test") is splits.test
  batch = next(iter(datasets.train_batches(splits, 4, seed=0))).numpy()
  train_rows = {row.tobytes() for row in splits.train}
  assert all(row.tobytes() in train_rows for row in batch)


def test_static_mnist_reads_original_amat(tmp_path, small_specs):
  del small_specs
  rng = np.random.default_rng(1)
  folder = tmp_path / "manual" / "binarized_mnist"
  folder.mkdir(parents=True)
  for split, size in STATIC_SIZES.items():
    x = rng.integers(0, 2, (size, 784))
    np.savetxt(folder / f"binarized_mnist_{split}.amat", x, fmt="%d")
  splits = datasets.load("static_mnist", manual_dir=tmp_path / "manual",
                         data_dir=tmp_path / "tfds")
  assert splits.valid.shape == (STATIC_SIZES["valid"], 784)


def test_arrays_are_read_only(load_small):
  splits = load_small("dynamic_mnist")
  with pytest.raises(ValueError):
    splits.train[0, 0] = 1.0


def test_train_mean_is_cached_beside_prepared_data(load_small, data_dir):
  splits = load_small("fashion_mnist")
  (cache,) = data_dir.glob("tf_discrete_fashion_mnist/*/train_mean_*.npy")
  np.testing.assert_array_equal(np.load(cache), splits.train_mean)
  # A second load reads the cache rather than recomputing.
  np.save(cache, np.full(784, 0.25, np.float32))
  assert (load_small("fashion_mnist").train_mean == 0.25).all()
  cache.unlink()


def test_second_load_needs_no_raw_files(load_small, data_dir, tmp_path):
  first = load_small("omniglot")
  again = datasets.load("omniglot", manual_dir=tmp_path / "empty",
                        data_dir=data_dir)
  np.testing.assert_array_equal(first.test, again.test)


def test_environment_variables(raw, data_dir, small_specs, monkeypatch):
  del small_specs
  monkeypatch.setenv(datasets.MANUAL_DIR_ENV, str(raw[0]))
  monkeypatch.setenv(datasets.DATA_DIR_ENV, str(data_dir))
  assert datasets.load("dynamic_mnist").train.shape == (MNIST_CUT, 784)


def test_too_small_train_split_for_cut(raw, data_dir):
  # The real cut (first 50,000) cannot be taken from the 24-image fixture.
  with pytest.raises(ValueError, match="too few"):
    datasets.load("dynamic_mnist", manual_dir=raw[0], data_dir=data_dir)


# --------------------------------------------------------------------------
# Errors.
# --------------------------------------------------------------------------


def test_unknown_name_lists_available():
  with pytest.raises(ValueError, match="dynamic_mnist.*static_mnist"):
    datasets.load("cifar10")


@pytest.mark.parametrize("name,expected", [
    ("dynamic_mnist", "train-images-idx3-ubyte.gz"),
    ("omniglot", "omniglot28.mat"),
    ("static_mnist", "binarized_mnist_valid.mat"),
])
def test_missing_files_say_what_and_where(tmp_path, name, expected):
  (tmp_path / "manual" / "mnist").mkdir(parents=True)  # Empty folder.
  with pytest.raises(datasets.DatasetNotFoundError) as error:
    datasets.load(name, manual_dir=tmp_path / "manual",
                  data_dir=tmp_path / "tfds")
  message = str(error.value)
  assert isinstance(error.value, FileNotFoundError)
  assert expected in message
  assert str(tmp_path / "manual") in message
  assert datasets.MANUAL_DIR_ENV in message and "download" in message


def test_unreachable_download_fails_fast_with_instructions(
    tmp_path, monkeypatch):

  def unreachable(address, timeout):
    raise OSError(f"no route to {address} within {timeout} s")

  monkeypatch.setattr(socket, "create_connection", unreachable)
  with pytest.raises(datasets.DatasetNotFoundError, match="cannot connect"):
    datasets.load("omniglot", data_dir=tmp_path / "tfds", download=True)


def _corrupt_root(tmp_path, raw, folder, filename, content: bytes):
  """A copy of the fixture folder with one file replaced."""
  root = tmp_path / "manual"
  (root / folder).mkdir(parents=True)
  for source in (raw[0] / folder).iterdir():
    (root / folder / source.name).write_bytes(source.read_bytes())
  (root / folder / filename).write_bytes(content)
  return root


def _truncated(raw, folder, filename):
  data = (raw[0] / folder / filename).read_bytes()
  return data[:len(data) // 2]


def _idx_gz(magic=0x803, count=3, rows=28, pixels=3 * 784):
  return gzip.compress(struct.pack(">4I", magic, count, rows, 28)
                       + bytes(pixels))


@pytest.mark.parametrize("name,folder,filename,content,problem", [
    ("dynamic_mnist", "mnist", "train-images-idx3-ubyte.gz",
     lambda raw: _truncated(raw, "mnist", "train-images-idx3-ubyte.gz"),
     "not a complete gzip file"),
    ("dynamic_mnist", "mnist", "t10k-images-idx3-ubyte.gz",
     lambda raw: _idx_gz(magic=0x801), "magic number"),
    ("fashion_mnist", "fashion_mnist", "t10k-images-idx3-ubyte.gz",
     lambda raw: _idx_gz(pixels=2 * 784), "header announces 3 images"),
    ("fashion_mnist", "fashion_mnist", "t10k-images-idx3-ubyte.gz",
     lambda raw: _idx_gz(rows=32, pixels=3 * 32 * 28), "32x28"),
    ("omniglot", "omniglot", "omniglot28.mat",
     lambda raw: _truncated(raw, "omniglot", "omniglot28.mat"),
     "not a readable MATLAB"),
    ("static_mnist", "binarized_mnist", "binarized_mnist_test.mat",
     lambda raw: b"not a mat file" * 20, "not a readable MATLAB"),
])
def test_corrupt_files_are_reported(tmp_path, raw, name, folder, filename,
                                    content, problem):
  root = _corrupt_root(tmp_path, raw, folder, filename, content(raw))
  with pytest.raises(datasets.CorruptDatasetError, match=problem) as error:
    datasets.load(name, manual_dir=root, data_dir=tmp_path / "tfds")
  assert filename in str(error.value)


@pytest.mark.parametrize("name,folder,filename,contents,problem", [
    ("omniglot", "omniglot", "omniglot28.mat",
     {"data": np.zeros((783, 5)), "testdata": np.zeros((784, 5))},
     r"'data' has shape \(783, 5\)"),
    ("omniglot", "omniglot", "omniglot28.mat",
     {"data": np.zeros((784, 5))}, "missing variable"),
    ("omniglot", "omniglot", "omniglot28.mat",
     {"data": np.full((784, 5), 2.0), "testdata": np.zeros((784, 5))},
     r"outside \[0, 1\]"),
    ("static_mnist", "binarized_mnist", "binarized_mnist_valid.mat",
     {"X": np.full((4, 784), 3, np.uint8)}, "other than 0 and 1"),
])
def test_wrong_mat_layouts_are_reported(tmp_path, raw, name, folder, filename,
                                        contents, problem):
  root = _corrupt_root(tmp_path, raw, folder, filename, b"")
  scipy.io.savemat(root / folder / filename, contents)
  with pytest.raises(datasets.CorruptDatasetError, match=problem):
    datasets.load(name, manual_dir=root, data_dir=tmp_path / "tfds")


def test_unreadable_prepared_data_are_reported(tmp_path, raw):
  datasets.load("static_mnist", manual_dir=raw[0], data_dir=tmp_path)
  (record,) = tmp_path.glob("tf_discrete_static_mnist/*/*test.tfrecord*")
  record.write_bytes(record.read_bytes()[:100])
  with pytest.raises(datasets.CorruptDatasetError, match="Remove .*to prepare"):
    datasets.load("static_mnist", manual_dir=raw[0], data_dir=tmp_path)


# --------------------------------------------------------------------------
# Concurrent preparation.
# --------------------------------------------------------------------------

# Loads static_mnist once both processes are ready (a barrier of files), so
# that their first preparations overlap.
_PREPARE = """
import os, sys, time
from tf_discrete import datasets
barrier, name, manual_dir, data_dir = sys.argv[1:]
open(os.path.join(barrier, name), "w").close()
while len(os.listdir(barrier)) < 2:
  time.sleep(0.005)
splits = datasets.load("static_mnist", manual_dir=manual_dir, data_dir=data_dir)
print("TRAIN", len(splits.train))
"""


def test_concurrent_first_preparations_both_succeed(tmp_path, raw):
  barrier = tmp_path / "barrier"
  barrier.mkdir()
  processes = [
      subprocess.Popen([sys.executable, "-c", _PREPARE, str(barrier), str(i),
                        str(raw[0]), str(tmp_path / "tfds")],
                       cwd=support.ROOT, env=support.ENV,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True)
      for i in range(2)]
  for process in processes:
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr[-3000:]
    assert f"TRAIN {STATIC_SIZES['train']}" in stdout


def test_preparation_waits_for_the_lock_then_reuses_the_prepared_data(
    tmp_path, raw, monkeypatch):
  """A load that finds the data directory locked waits, and then reads what
  the lock's holder prepared instead of preparing it again."""
  builder_class = datasets.SPECS["static_mnist"].builder
  data_dir = tmp_path / "tfds"
  data_dir.mkdir()
  name = builder_class(data_dir=data_dir).name
  prepare = builder_class.download_and_prepare
  prepared_by_load = []

  def counted(self, **kwargs):
    prepared_by_load.append(self)
    return prepare(self, **kwargs)

  monkeypatch.setattr(builder_class, "download_and_prepare", counted)
  loaded = {}
  with open(data_dir / f"{name}.lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    thread = threading.Thread(target=lambda: loaded.update(
        splits=datasets.load("static_mnist", manual_dir=raw[0],
                             data_dir=data_dir)))
    thread.start()
    time.sleep(1.0)
    assert thread.is_alive() and not prepared_by_load
    # The lock's holder prepares the data set meanwhile.
    prepare(builder_class(data_dir=data_dir, allow_download=False),
            download_config=tfds.download.DownloadConfig(
                manual_dir=str(raw[0] / "binarized_mnist")))
  thread.join(timeout=120)
  assert not prepared_by_load
  assert len(loaded["splits"].train) == STATIC_SIZES["train"]


# --------------------------------------------------------------------------
# Binarization and pipelines.
# --------------------------------------------------------------------------


def test_binarize_matches_grey_levels_on_average():
  grey = np.linspace(0.0, 1.0, 784, dtype=np.float32)
  draws = datasets.binarize(np.tile(grey, (4000, 1)), seed=[3, 4]).numpy()
  assert draws.dtype == np.float32 and set(np.unique(draws)) <= {0.0, 1.0}
  assert (draws[:, 0] == 0).all() and (draws[:, -1] == 1).all()
  stderr = np.sqrt(grey * (1 - grey) / len(draws)) + 1e-6
  z = (draws.mean(0) - grey) / stderr
  assert np.abs(z).max() < 5, np.abs(z).max()


def test_binarize_is_seeded_and_xla_consistent():
  images = tf.fill([16, 784], 0.5)
  first = datasets.binarize(images, [1, 2])
  np.testing.assert_array_equal(first, datasets.binarize(images, [1, 2]))
  assert not np.array_equal(first, datasets.binarize(images, [1, 3]))
  jitted = tf.function(datasets.binarize, jit_compile=True)
  np.testing.assert_array_equal(first, jitted(images, tf.constant([1, 2])))


def test_binarize_rejects_bad_arguments():
  with pytest.raises(TypeError, match="floating"):
    datasets.binarize(np.zeros((2, 784), np.uint8), [0, 0])
  with pytest.raises(ValueError, match=r"shape \[2\]"):
    datasets.binarize(np.zeros((2, 784), np.float32), [0, 0, 0])


def test_fixed_eval_sets_are_fixed(load_small):
  splits = load_small("dynamic_mnist")
  test = splits.fixed_eval_set("test")
  assert set(np.unique(test)) <= {0.0, 1.0} and test.shape == splits.test.shape
  np.testing.assert_array_equal(
      test, datasets.binarize(splits.test,
                              datasets.EVAL_BINARIZATION_SEEDS["test"]))
  # Same in a fresh load (another run), and cached within one.
  assert splits.fixed_eval_set("test") is test
  np.testing.assert_array_equal(
      load_small("dynamic_mnist").fixed_eval_set("test"), test)
  assert splits.fixed_eval_set("valid").shape == splits.valid.shape
  with pytest.raises(ValueError, match="valid"):
    splits.fixed_eval_set("train")


def test_train_batches_visit_each_image_once_per_epoch():
  num_images, batch_size = 23, 5  # 4 batches per epoch, 3 images dropped.
  ids = np.repeat(np.arange(num_images)[:, None] / 64, 784, axis=1)
  splits = grey_splits(ids, dynamic=False)
  batches = list(datasets.train_batches(splits, batch_size, seed=7).take(8))
  assert all(b.shape == (batch_size, 784) for b in batches)
  epochs = [np.concatenate(batches[:4])[:, 0], np.concatenate(batches[4:])[:, 0]]
  for epoch in epochs:
    assert len(np.unique(epoch)) == 4 * batch_size  # No repeats in an epoch.
  assert not np.array_equal(epochs[0], epochs[1])  # Reshuffled.


def test_train_batches_are_seeded_and_freshly_binarized():
  splits = grey_splits(np.full((10, 784), 0.5))
  dataset = datasets.train_batches(splits, 10, seed=1)
  assert dataset.element_spec.shape == (10, 784)
  first = [b.numpy() for b in dataset.take(3)]
  again = [b.numpy() for b in datasets.train_batches(splits, 10, seed=1)
           .take(3)]
  other = next(iter(datasets.train_batches(splits, 10, seed=[0, 2]))).numpy()
  np.testing.assert_array_equal(first, again)
  assert not np.array_equal(first[0], other)
  # One image per row and one batch per epoch: sorted rows differ across
  # epochs only through a fresh binarization.
  assert not np.array_equal(sorted_rows(first[0]), sorted_rows(first[1]))
  assert abs(np.mean(first) - 0.5) < 0.02


def test_train_batches_validate_batch_size():
  splits = grey_splits(np.zeros((4, 784)))
  for bad in (0, 2.5, True):
    with pytest.raises(ValueError, match="positive integer"):
      datasets.train_batches(splits, bad, seed=0)
  with pytest.raises(ValueError, match="exceeds"):
    datasets.train_batches(splits, 5, seed=0)


def test_eval_batches_keep_order_and_remainder():
  images = np.random.default_rng(2).random((11, 784), dtype=np.float32)
  batches = [b.numpy() for b in datasets.eval_batches(images, 4)]
  assert [len(b) for b in batches] == [4, 4, 3]
  np.testing.assert_array_equal(np.concatenate(batches), images)


# --------------------------------------------------------------------------
# The real data, when present.
# --------------------------------------------------------------------------


@pytest.mark.skipif(not SHARED_DATA.is_dir(),
                    reason=f"no raw data at {SHARED_DATA}")
def test_shared_data_shapes_and_splits(tmp_path_factory):
  data_dir = tmp_path_factory.mktemp("tfds_shared")
  # The builder prefers IWAE's file; the stand-in has other split sizes.
  omniglot_file = next(path for path in (SHARED_DATA / "omniglot" / name
                                         for name in ("chardata.mat",
                                                      "omniglot28.mat"))
                       if path.is_file())
  omniglot_total = {name: shape
                    for name, shape, _ in scipy.io.whosmat(omniglot_file)}
  expected = {
      "dynamic_mnist": (50_000, 10_000, 10_000),
      "fashion_mnist": (50_000, 10_000, 10_000),
      "omniglot": (omniglot_total["data"][1] - 1_345, 1_345,
                   omniglot_total["testdata"][1]),
      "static_mnist": (50_000, 10_000, 10_000),
  }
  for name, sizes in expected.items():
    splits = datasets.load(name, manual_dir=SHARED_DATA, data_dir=data_dir)
    shapes = (splits.train.shape, splits.valid.shape, splits.test.shape)
    assert shapes == tuple((n, 784) for n in sizes), name
    assert splits.train_mean.shape == (784,)
    assert 0.05 < splits.train_mean.mean() < 0.35, name
    assert 0 <= splits.train.min() and splits.train.max() <= 1
