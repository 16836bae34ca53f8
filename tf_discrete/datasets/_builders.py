"""tensorflow-datasets builders for the four benchmark sets.

Each builder stores one feature, ``image``: the 784 pixels of a 28x28 image
in row-major order, as raw bytes (uint8 pixels for MNIST-style sets, float32
grey levels for Omniglot, whose area-averaged grey levels are not multiples
of 1/255). Raw bytes parse in one vectorized op (:meth:`grey_levels`), which
keeps the cached load of a prepared set well under a second.

Raw files come from the manual directory of
``tfds.download.DownloadConfig(manual_dir=...)`` when they are there, else
from the original URLs if the builder was allowed to download. The stock
tfds ``mnist`` builder also reads a manual directory, but only files whose
SHA-256 matches its registry, which rules out every other copy (including
test fixtures); these builders check the file structure instead.

MNIST-style builders keep the tfds default example order (hashes of the
example index, salted by the split name), so ``train[:50000]`` is the same
50,000 images as ``tfds.load("mnist", split="train[:50000]")``. Omniglot
keeps file order, because its validation set is defined as the last 1,345
training images of the file.
"""

import os
import socket
import urllib.parse

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from tf_discrete.datasets import _raw

MANUAL_DIR_ENV = "TF_DISCRETE_MANUAL_DIR"
DATA_DIR_ENV = "TF_DISCRETE_DATA_DIR"

# How long to wait for a download host before reporting it unreachable;
# tfds itself retries with back-off for minutes when offline.
_CONNECT_TIMEOUT_S = 10


class FlatImageBuilder(tfds.core.GeneratorBasedBuilder,
                       skip_registration=True):
  """Base builder: examples are ``{"image": [784] pixels}``.

  Subclasses define where the raw files live and how to read them:

  * ``MANUAL_SUBDIR``: the folder of the manual-directory root holding them.
  * ``RAW_FILES``: accepted sets of file names, preferred first.
  * ``URLS``: file name -> URL, for downloading the first set.
  * ``_read_splits(paths)``: file name -> path to split name -> pixels.
  * ``PIXEL_DTYPE`` / ``GREY_DIVISOR``: grey level = pixel / divisor.
  """

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}

  MANUAL_SUBDIR: str
  RAW_FILES: tuple
  URLS: dict
  PIXEL_DTYPE = np.uint8
  GREY_DIVISOR = 1
  DESCRIPTION = ""
  HOMEPAGE = ""
  CITATION = ""
  KEEP_FILE_ORDER = False

  def __init__(self, *, allow_download: bool = True, **kwargs):
    """Creates the builder.

    Args:
      allow_download: whether missing raw files may be downloaded. If False,
        they must be in the manual directory.
      **kwargs: forwarded to ``tfds.core.GeneratorBasedBuilder`` (e.g.
        ``data_dir``).
    """
    self._allow_download = allow_download
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=self.DESCRIPTION,
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Tensor(
                shape=(_raw.IMAGE_SIZE,), dtype=self.PIXEL_DTYPE,
                encoding=tfds.features.Encoding.BYTES),
        }),
        homepage=self.HOMEPAGE,
        citation=self.CITATION,
        disable_shuffling=self.KEEP_FILE_ORDER,
    )

  def _split_generators(self, dl_manager):
    splits = self._read_splits(self._raw_paths(dl_manager))
    return {name: self._generate_examples(images)
            for name, images in splits.items()}

  def _generate_examples(self, images):
    for index, image in enumerate(images):
      yield index, {"image": image}

  def _read_splits(self, paths: dict) -> dict:
    raise NotImplementedError

  def grey_levels(self, split: str) -> np.ndarray:
    """Returns a prepared split as float32 grey levels ``[N, 784]``.

    Reads the split's TFRecord files with one vectorized parse instead of
    ``as_dataset``, whose per-example pipeline is ~10x slower (3 s instead of
    0.3 s for MNIST train). The layout read is the one ``_info`` declares: a
    single bytes feature ``image``; the record order is tfds' own.
    """
    split_info = self.info.splits[split]
    records = tf.data.TFRecordDataset(
        [os.fspath(p) for p in split_info.filepaths])
    serialized = records.batch(split_info.num_examples).get_single_element()
    raw = tf.io.parse_example(
        serialized, {"image": tf.io.FixedLenFeature([], tf.string)})["image"]
    pixels = tf.io.decode_raw(raw, self.PIXEL_DTYPE).numpy()
    return np.divide(pixels, self.GREY_DIVISOR, dtype=np.float32)

  def _raw_paths(self, dl_manager) -> dict:
    """Finds the raw files in the manual directory, or downloads them."""
    try:
      manual_dir = dl_manager.manual_dir
    except AssertionError as e:
      # tfds' message names the missing or empty directory and repeats
      # MANUAL_DOWNLOAD_INSTRUCTIONS.
      not_found = str(e)
    else:
      for names in self.RAW_FILES:
        if all((manual_dir / name).is_file() for name in names):
          return {name: manual_dir / name for name in names}
      not_found = (f"Raw files of {self.name!r} not found in {manual_dir}. "
                   f"{self.MANUAL_DOWNLOAD_INSTRUCTIONS}")
    if not self._allow_download:
      raise _raw.DatasetNotFoundError(not_found)
    self._check_reachable(not_found)
    return dl_manager.download(self.URLS)

  def _check_reachable(self, not_found: str):
    """Fails fast, with instructions, when a download host is unreachable."""
    urls = map(urllib.parse.urlsplit, self.URLS.values())
    hosts = {(url.hostname, url.port or (443 if url.scheme == "https" else 80))
             for url in urls}
    for host, port in sorted(hosts):
      try:
        socket.create_connection(
            (host, port), timeout=_CONNECT_TIMEOUT_S).close()
      except OSError as e:
        raise _raw.DatasetNotFoundError(
            f"{not_found}\nDownloading failed too: cannot connect to "
            f"{host}:{port} ({e}).") from e

  def __init_subclass__(cls, **kwargs):
    super().__init_subclass__(**kwargs)
    # tfds shows these in its own errors about the manual directory.
    file_sets = " or ".join(", ".join(names) for names in cls.RAW_FILES)
    cls.MANUAL_DOWNLOAD_INSTRUCTIONS = (
        f"Expected {file_sets} in the folder '{cls.MANUAL_SUBDIR}/' of the "
        f"manual-directory root (argument `manual_dir=` or environment "
        f"variable {MANUAL_DIR_ENV}). Get them from "
        f"{', '.join(cls.URLS.values())}, or allow downloading "
        f"(`download=True`, the default when no manual-directory root is "
        f"configured).")


_MNIST_TRAIN = "train-images-idx3-ubyte.gz"
_MNIST_TEST = "t10k-images-idx3-ubyte.gz"


class TfDiscreteMnist(FlatImageBuilder, skip_registration=True):
  """MNIST images (no labels) from the original IDX files."""

  MANUAL_SUBDIR = "mnist"
  RAW_FILES = ((_MNIST_TRAIN, _MNIST_TEST),)
  # The mirror tfds' own `mnist` builder downloads from.
  URLS = {name: "https://storage.googleapis.com/cvdf-datasets/mnist/" + name
          for name in RAW_FILES[0]}
  GREY_DIVISOR = 255
  DESCRIPTION = "MNIST handwritten digits, 60,000 train and 10,000 test."
  HOMEPAGE = "http://yann.lecun.com/exdb/mnist/"
  CITATION = """@article{lecun1998gradient,
  title={Gradient-based learning applied to document recognition},
  author={LeCun, Yann and Bottou, L{\\'e}on and Bengio, Yoshua and
          Haffner, Patrick},
  journal={Proceedings of the IEEE}, volume={86}, number={11},
  pages={2278--2324}, year={1998}}"""

  def _read_splits(self, paths):
    return {"train": _raw.read_idx_images(paths[_MNIST_TRAIN]),
            "test": _raw.read_idx_images(paths[_MNIST_TEST])}


class TfDiscreteFashionMnist(TfDiscreteMnist, skip_registration=True):
  """Fashion-MNIST images (no labels) from the original IDX files."""

  MANUAL_SUBDIR = "fashion_mnist"
  URLS = {name: "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
                + name for name in TfDiscreteMnist.RAW_FILES[0]}
  DESCRIPTION = "Fashion-MNIST article images, 60,000 train and 10,000 test."
  HOMEPAGE = "https://github.com/zalandoresearch/fashion-mnist"
  CITATION = """@article{xiao2017fashion,
  title={Fashion-MNIST: a Novel Image Dataset for Benchmarking Machine
         Learning Algorithms},
  author={Xiao, Han and Rasul, Kashif and Vollgraf, Roland},
  journal={arXiv preprint arXiv:1708.07747}, year={2017}}"""


class TfDiscreteOmniglot(FlatImageBuilder, skip_registration=True):
  """28x28 Omniglot grey levels in the layout of IWAE's ``chardata.mat``.

  The file holds ``data`` (train + valid) and ``testdata``, each ``[784, N]``
  with one flattened image per column. IWAE's file, written by MATLAB,
  flattens each image column-major (its reference loaders undo this with
  ``reshape(..., order="F")``); the stand-in ``omniglot28.mat``, made from
  the original background/evaluation sets, flattens row-major. Both come out
  row-major here. The IWAE file is preferred when both are present.
  """

  MANUAL_SUBDIR = "omniglot"
  RAW_FILES = (("chardata.mat",), ("omniglot28.mat",))
  URLS = {"chardata.mat": "https://raw.githubusercontent.com/yburda/iwae/"
                          "master/datasets/OMNIGLOT/chardata.mat"}
  PIXEL_DTYPE = np.float32
  KEEP_FILE_ORDER = True
  DESCRIPTION = "28x28 Omniglot characters, grey levels (IWAE layout)."
  HOMEPAGE = "https://github.com/yburda/iwae"
  CITATION = """@article{lake2015human,
  title={Human-level concept learning through probabilistic program
         induction},
  author={Lake, Brenden M and Salakhutdinov, Ruslan and Tenenbaum, Joshua B},
  journal={Science}, volume={350}, number={6266}, pages={1332--1338},
  year={2015}}"""

  _COLUMN_MAJOR_FILES = ("chardata.mat",)

  def _read_splits(self, paths):
    ((name, path),) = paths.items()
    columns = _raw.read_mat(path, ("data", "testdata"))
    splits = {}
    for split, key in (("train", "data"), ("test", "testdata")):
      value = columns[key]
      if value.ndim != 2 or value.shape[0] != _raw.IMAGE_SIZE:
        raise _raw.corrupt(
            path, f"variable {key!r} has shape {value.shape}, expected "
            f"({_raw.IMAGE_SIZE}, N) with one image per column")
      images = value.T.astype(np.float32)
      if name in self._COLUMN_MAJOR_FILES:
        images = images.reshape(-1, 28, 28).transpose(0, 2, 1)
      images = np.ascontiguousarray(images.reshape(-1, _raw.IMAGE_SIZE))
      splits[split] = _raw.check_images(path, images, binary=False)
    return splits


_STATIC_SPLITS = (("train", "train"), ("validation", "valid"),
                  ("test", "test"))


class TfDiscreteStaticMnist(FlatImageBuilder, skip_registration=True):
  """Larochelle & Murray's fixed binarization of MNIST, 50k/10k/10k.

  Reads the MATLAB conversion (``binarized_mnist_*.mat``, variable ``X``,
  ``[N, 784]`` of 0/1) or the original ``.amat`` text files, which are what
  it downloads (the URLs of tfds' ``binarized_mnist``).
  """

  MANUAL_SUBDIR = "binarized_mnist"
  RAW_FILES = (
      tuple(f"binarized_mnist_{stem}.amat" for _, stem in _STATIC_SPLITS),
      tuple(f"binarized_mnist_{stem}.mat" for _, stem in _STATIC_SPLITS),
  )
  URLS = {name: "http://www.cs.toronto.edu/~larocheh/public/datasets/"
                "binarized_mnist/" + name for name in RAW_FILES[0]}
  DESCRIPTION = "MNIST with the fixed binarization of Larochelle & Murray."
  HOMEPAGE = "http://proceedings.mlr.press/v15/larochelle11a.html"
  CITATION = """@inproceedings{larochelle2011neural,
  title={The Neural Autoregressive Distribution Estimator},
  author={Larochelle, Hugo and Murray, Iain},
  booktitle={AISTATS}, pages={29--37}, year={2011}}"""

  def _read_splits(self, paths):
    splits = {}
    for split, stem in _STATIC_SPLITS:
      (path,) = [p for name, p in paths.items()
                 if name.startswith(f"binarized_mnist_{stem}.")]
      if path.suffix == ".amat":
        images = _raw.read_amat(path)
      else:
        images = _raw.read_mat(path, ("X",))["X"]
      images = _raw.check_images(path, images, binary=True)
      splits[split] = images.astype(np.uint8)
    return splits
