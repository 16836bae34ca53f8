"""Readers for the raw file formats, with integrity checks.

Every reader returns images as a ``[N, 784]`` array, one row-major 28x28
image per row, and turns any malformed input into a
:class:`CorruptDatasetError` that names the file and what is wrong with it,
so a bad download never surfaces as a crash deep inside TensorFlow.
"""

import gzip
import os
import struct
import zlib

import numpy as np
import scipy.io

IMAGE_SIZE = 28 * 28

_IDX_IMAGES_MAGIC = 0x00000803
_IDX_HEADER = struct.Struct(">4I")  # magic, count, rows, columns.


class DatasetNotFoundError(FileNotFoundError):
  """The raw files of a dataset are neither on disk nor downloadable."""


class CorruptDatasetError(ValueError):
  """A raw file exists but is truncated, corrupt or of the wrong layout, or
  the prepared data cannot be read or do not fit the dataset's splits."""


def corrupt(path, problem: str) -> CorruptDatasetError:
  """The error for a raw file that exists but cannot be used."""
  return CorruptDatasetError(
      f"{os.fspath(path)} is corrupt or not the expected file: {problem}. "
      "Replace it with a fresh copy of the original file.")


def read_idx_images(path) -> np.ndarray:
  """Reads a gzip-compressed IDX image file of 28x28 uint8 images.

  Args:
    path: path of an ``*-images-idx3-ubyte.gz`` file (MNIST layout).

  Returns:
    uint8 array ``[N, 784]`` of pixels in 0..255.

  Raises:
    CorruptDatasetError: truncated gzip stream, wrong magic number, image size
      other than 28x28, or a pixel count that disagrees with the header.
  """
  try:
    with gzip.open(path, "rb") as f:
      data = f.read()
  except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is OSError.
    raise corrupt(path, f"not a complete gzip file ({e})") from e
  if len(data) < _IDX_HEADER.size:
    raise corrupt(path, f"only {len(data)} bytes, shorter than the IDX header")
  magic, count, rows, cols = _IDX_HEADER.unpack_from(data)
  if magic != _IDX_IMAGES_MAGIC:
    raise corrupt(
        path, f"IDX magic number {magic:#010x}, expected "
        f"{_IDX_IMAGES_MAGIC:#010x} (unsigned byte images of rank 3)")
  if (rows, cols) != (28, 28):
    raise corrupt(path, f"images are {rows}x{cols}, expected 28x28")
  num_pixels = len(data) - _IDX_HEADER.size
  if num_pixels != count * IMAGE_SIZE:
    raise corrupt(
        path, f"header announces {count} images ({count * IMAGE_SIZE} pixel "
        f"bytes) but the file holds {num_pixels} pixel bytes")
  return np.frombuffer(
      data, np.uint8, offset=_IDX_HEADER.size).reshape(count, IMAGE_SIZE)


def read_mat(path, keys) -> dict:
  """Reads the named variables of a MATLAB v5 ``.mat`` file.

  Args:
    path: path of the ``.mat`` file.
    keys: names of the variables that must be present.

  Returns:
    dict from each key to its array.

  Raises:
    CorruptDatasetError: the file does not parse or lacks a variable.
  """
  keys = list(keys)
  try:
    contents = scipy.io.loadmat(path, variable_names=keys)
  # scipy reports truncation and garbage through many unrelated exception
  # types (MatReadError, OSError, ValueError, IndexError, ...); any failure to
  # parse means the file is not the expected one.
  except Exception as e:  # pylint: disable=broad-except
    raise corrupt(path, f"not a readable MATLAB v5 file ({e!r})") from e
  missing = [k for k in keys if k not in contents]
  if missing:
    raise corrupt(path, f"missing variable(s) {missing}")
  return {k: contents[k] for k in keys}


def read_amat(path) -> np.ndarray:
  """Reads a Larochelle ``.amat`` text file: one image of 784 0/1 per line.

  Raises:
    CorruptDatasetError: ragged rows or non-numeric entries.
  """
  try:
    return np.loadtxt(path, dtype=np.uint8, ndmin=2)
  except ValueError as e:
    raise corrupt(path, f"not a table of 0/1 pixels ({e})") from e


def check_images(path, images: np.ndarray, *, binary: bool) -> np.ndarray:
  """Checks that ``images`` is ``[N, 784]`` of grey levels or of 0/1.

  Args:
    path: the file the images came from, for error messages.
    images: the array to check.
    binary: whether only the values 0 and 1 are allowed.

  Returns:
    ``images``, unchanged.

  Raises:
    CorruptDatasetError: wrong shape, or values outside [0, 1] (resp. {0, 1}).
  """
  if images.ndim != 2 or images.shape[1] != IMAGE_SIZE:
    raise corrupt(
        path, f"array of shape {images.shape}, expected [N, {IMAGE_SIZE}]")
  if binary:
    if not ((images == 0) | (images == 1)).all():
      raise corrupt(path, "pixels other than 0 and 1 in a binarized set")
  elif not (np.isfinite(images).all() and images.min(initial=0) >= 0
            and images.max(initial=0) <= 1):
    raise corrupt(path, "grey levels outside [0, 1]")
  return images
