"""Dataset registry, :func:`load` and the :class:`Splits` it returns."""

import contextlib
import dataclasses
import os
import time
from typing import Optional

from absl import logging
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from tf_discrete.datasets import _builders
from tf_discrete.datasets import _pipeline
from tf_discrete.datasets import _raw

try:
  import fcntl  # pylint: disable=g-import-not-at-top
except ImportError:  # Not POSIX: preparation is not serialized.
  fcntl = None

# Seeds of the one-off binarization of the evaluation sets. The official
# DisARM code re-binarizes valid/test at every evaluation, which adds
# binarization noise to every comparison; fixing them makes evaluations
# comparable across runs and estimators.
EVAL_BINARIZATION_SEEDS = {"valid": (2020, 1), "test": (2020, 2)}


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """How a dataset name maps onto a builder and its splits.

  Attributes:
    builder: the tfds builder class that prepares the raw files.
    valid_cut: ``train = native_train[:valid_cut]`` and ``valid =
      native_train[valid_cut:]`` (negative: counted from the end). None: the
      builder has its own ``validation`` split.
    dynamic: whether training images are grey levels to re-binarize.
  """
  builder: type
  valid_cut: Optional[int]
  dynamic: bool


# Module level so that tests can shrink the cuts to their tiny fixtures.
SPECS = {
    "dynamic_mnist": DatasetSpec(_builders.TfDiscreteMnist, 50_000, True),
    "fashion_mnist": DatasetSpec(
        _builders.TfDiscreteFashionMnist, 50_000, True),
    "omniglot": DatasetSpec(_builders.TfDiscreteOmniglot, -1_345, True),
    "static_mnist": DatasetSpec(_builders.TfDiscreteStaticMnist, None, False),
}


def available() -> list:
  """Sorted names accepted by :func:`load`."""
  return sorted(SPECS)


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Splits:
  """A dataset in memory: float32 ``[N, 784]`` images per split.

  :func:`load` returns read-only arrays (``train`` and ``valid`` may be
  views of one array).

  Attributes:
    name: the dataset name given to :func:`load`.
    train, valid, test: grey levels in [0, 1] (0/1 for static sets).
    train_mean: float32 ``[784]`` per-pixel mean of ``train``.
    dynamic: whether :func:`train_batches` re-binarizes training images.
  """
  name: str
  train: np.ndarray
  valid: np.ndarray
  test: np.ndarray
  train_mean: np.ndarray
  dynamic: bool
  _fixed_eval: dict = dataclasses.field(default_factory=dict, init=False)

  def fixed_eval_set(self, split: str) -> np.ndarray:
    """The ``valid`` or ``test`` images, binarized once with a fixed seed.

    The seed is ``EVAL_BINARIZATION_SEEDS[split]`` and the draw runs on the
    CPU, so the set is the same in every run on every machine with this
    TensorFlow version. Static sets are returned as stored.

    Args:
      split: ``"valid"`` or ``"test"``.

    Returns:
      read-only float32 ``[N, 784]`` array of 0/1.
    """
    if split not in EVAL_BINARIZATION_SEEDS:
      raise ValueError(
          f"`split` must be one of {sorted(EVAL_BINARIZATION_SEEDS)}, got "
          f"{split!r}.")
    images = getattr(self, split)
    if not self.dynamic:
      return images
    if split not in self._fixed_eval:
      with tf.device("/CPU:0"):
        binary = _pipeline.binarize(
            images, EVAL_BINARIZATION_SEEDS[split]).numpy()
      self._fixed_eval[split] = _read_only(binary)
    return self._fixed_eval[split]

  def __repr__(self):
    return (f"Splits(name={self.name!r}, train={self.train.shape}, "
            f"valid={self.valid.shape}, test={self.test.shape}, "
            f"dynamic={self.dynamic})")


def _read_only(array: np.ndarray) -> np.ndarray:
  array.flags.writeable = False
  return array


def _arg_or_env(value, env_var: str) -> Optional[str]:
  if value is None:
    value = os.environ.get(env_var) or None
  return None if value is None else os.path.expanduser(os.fspath(value))


def _spec(name: str) -> DatasetSpec:
  if name not in SPECS:
    raise ValueError(
        f"Unknown dataset {name!r}; available: {', '.join(available())}.")
  return SPECS[name]


def load(name: str, manual_dir=None, data_dir=None,
         download: Optional[bool] = None, progress: bool = True) -> Splits:
  """Prepares (once) and loads a dataset into memory.

  The first call converts the raw files into a tfds dataset under
  ``data_dir``; later calls read that back (about a second) and never touch
  the raw files or the network.

  Args:
    name: one of :func:`available`.
    manual_dir: root of the raw files, one folder per dataset (``mnist/``,
      ``fashion_mnist/``, ``omniglot/``, ``binarized_mnist/``). Defaults to
      ``$TF_DISCRETE_MANUAL_DIR``, else ``<data_dir>/downloads/manual``.
    data_dir: tfds data directory for prepared data. Defaults to
      ``$TF_DISCRETE_DATA_DIR``, else the tfds default.
    download: whether raw files missing from the manual folder may be
      downloaded. Defaults to True only when no manual root was given
      (argument or environment), so a configured offline setup fails at once
      instead of waiting on the network.
    progress: show tfds's progress bars while preparing (the first load);
      False turns them off for the rest of the process.

  Returns:
    A :class:`Splits`.

  Processes that load the same dataset into the same ``data_dir`` for the
  first time at once (two runs started together) prepare it once: the first
  takes a lock file in the data directory (``<data_dir>/<builder>.lock``)
  and the others wait for it, then read what it prepared.

  Raises:
    ValueError: unknown ``name``.
    DatasetNotFoundError: raw files missing and not downloadable.
    CorruptDatasetError: a raw file is truncated or malformed, or the
      prepared data cannot be read or are too small for the validation cut.
  """
  spec = _spec(name)
  manual_root = _arg_or_env(manual_dir, _builders.MANUAL_DIR_ENV)
  if download is None:
    download = manual_root is None
  elif not isinstance(download, bool):
    raise TypeError(f"`download` must be a bool or None, got {download!r}.")

  def make_builder():
    return spec.builder(
        data_dir=_arg_or_env(data_dir, _builders.DATA_DIR_ENV),
        allow_download=download)

  builder = make_builder()
  if not builder.is_prepared():
    with _preparation_lock(builder):
      # Another process may have prepared it while this one waited.
      builder = make_builder()
      if not builder.is_prepared():
        if manual_root is None:
          manual_root = builder.data_dir_root / "downloads" / "manual"
        if not progress:
          tfds.disable_progress_bar()  # For the rest of the process.
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(
                manual_dir=os.path.join(manual_root, builder.MANUAL_SUBDIR),
                # These builders are not hosted on GCS; asking would only
                # cost time.
                try_download_gcs=False))

  try:
    train, valid = _train_valid(name, spec, builder)
    test = builder.grey_levels("test")
  except tf.errors.OpError as e:
    raise _raw.CorruptDatasetError(
        f"The prepared data of {name!r} in {builder.data_path} cannot be "
        f"read ({type(e).__name__}: {e.message}). Remove "
        f"{builder.data_path} to prepare them again from the raw "
        f"files.") from e
  return Splits(
      name=name, train=train, valid=valid, test=_read_only(test),
      train_mean=_read_only(_train_mean(builder, train)),
      dynamic=spec.dynamic)


@contextlib.contextmanager
def _preparation_lock(builder):
  """Holds ``<data_dir>/<builder name>.lock`` (an exclusive ``flock``,
  waiting for it) while the dataset is prepared.

  The kernel releases the lock if its holder dies, so a killed preparation
  never blocks the next one. Without a local lock (an object-store data
  directory, a filesystem without locks) preparation goes on unlocked.
  """
  root = os.fspath(builder.data_dir_root)
  if fcntl is None or "://" in root:
    yield
    return
  try:
    os.makedirs(root, exist_ok=True)
    fd = os.open(os.path.join(root, f"{builder.name}.lock"),
                 os.O_RDWR | os.O_CREAT, 0o644)
  except OSError as e:  # E.g. a read-only data directory; tfds will say.
    logging.warning("Preparing %s without a lock: %s", builder.name, e)
    yield
    return
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      logging.info("Waiting for another process to prepare %s in %s.",
                   builder.name, root)
      start = time.time()
      fcntl.flock(fd, fcntl.LOCK_EX)
      logging.info("Waited %.1f s for the preparation of %s.",
                   time.time() - start, builder.name)
    except OSError as e:  # ENOLCK (NFS without a lock daemon), ...
      logging.warning("Preparing %s without a lock: %s", builder.name, e)
    yield
  finally:
    os.close(fd)  # Releases the lock.


def _train_valid(name: str, spec: DatasetSpec, builder):
  if spec.valid_cut is None:
    return (_read_only(builder.grey_levels("train")),
            _read_only(builder.grey_levels("validation")))
  images = _read_only(builder.grey_levels("train"))
  if not 0 < abs(spec.valid_cut) < len(images):
    raise _raw.CorruptDatasetError(
        f"{name!r}: the prepared train split in {builder.data_dir} has "
        f"{len(images)} images, too few for train/valid cut at "
        f"{spec.valid_cut}.")
  return images[:spec.valid_cut], images[spec.valid_cut:]


def _train_mean(builder, train: np.ndarray) -> np.ndarray:
  """The per-pixel training mean, cached beside the prepared data."""
  # The key names the images averaged: the first len(train) of the split.
  path = builder.data_path / f"train_mean_first{len(train)}.npy"
  try:
    with path.open("rb") as f:
      return np.load(f)
  except FileNotFoundError:
    pass
  mean = train.mean(axis=0, dtype=np.float64).astype(np.float32)
  partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
  try:
    with partial.open("wb") as f:
      np.save(f, mean)
    partial.replace(path)  # Atomic: concurrent readers see all or nothing.
  except OSError as e:  # E.g. a shared, read-only data directory.
    logging.warning("Could not cache the training mean at %s: %s", path, e)
  return mean
