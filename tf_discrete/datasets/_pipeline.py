"""Binarization and the tf.data input pipelines.

Images stay in memory as float32 grey levels; every batch is gathered and
binarized as a whole by a few vectorized ops, so the pipeline costs a small
fraction of a training step.
"""

import numbers

import numpy as np
import tensorflow as tf

from tf_discrete import _core


def binarize(images, seed) -> tf.Tensor:
  """Draws ``Bernoulli(images)`` statelessly: pixel 1 with prob. grey level.

  Usable inside ``tf.function`` and under ``jit_compile=True``: the noise is
  the library's stateless uniform (:func:`tf_discrete._core.uniform`), so the
  same seed gives the same binarization in eager, graph and XLA.

  Args:
    images: floating tensor of grey levels in [0, 1], any shape.
    seed: stateless seed, shape [2] integer (a Python int ``s`` means
      ``[0, s]``; None draws one from the global RNG).

  Returns:
    0./1. tensor of the same shape and dtype as ``images``.

  Raises:
    TypeError: integer ``images`` (divide uint8 pixels by 255 first) or a
      non-integer ``seed``.
    ValueError: ``seed`` not of shape [2].
  """
  images = tf.convert_to_tensor(images)
  if not images.dtype.is_floating:
    raise TypeError(
        f"`images` must be floating grey levels in [0, 1], got dtype "
        f"{images.dtype.name} (divide uint8 pixels by 255 first).")
  noise = _core.uniform(
      tf.shape(images), _core.resolve_seed(seed), images.dtype)
  # noise is uniform on the grid k * 2**-24 of [0, 1): P(noise < p) equals p
  # to within 2**-24, and exactly for p = 0 and p = 1.
  return tf.cast(noise < images, images.dtype)


def _check_batch_size(batch_size) -> int:
  if (isinstance(batch_size, bool)
      or not isinstance(batch_size, numbers.Integral) or batch_size < 1):
    raise ValueError(
        f"`batch_size` must be a positive integer, got {batch_size!r}.")
  return int(batch_size)


# Rows gathered and binarized per call of the map function: one call per
# batch would spend more time in per-call overhead than in the work at small
# batch sizes (about 1.5x slower at batch 50 on 2 CPU cores).
_ROWS_PER_CALL = 1024


def train_batches(splits, batch_size: int, seed) -> tf.data.Dataset:
  """Endless, shuffled, freshly binarized training batches.

  Epoch ``e`` visits the training images in a permutation seeded by
  ``(seed, e)`` (``tf.random.experimental.index_shuffle``, no shuffle
  buffer); the last ``N % batch_size`` images of each permutation are
  dropped, so every batch is full. Binarization noise is drawn afresh for
  every group of batches, so an image gets a new binarization every epoch
  (for ``splits.dynamic``; static sets are used as stored). The stream is a
  pure function of ``(seed, batch_size)``.

  Args:
    splits: a :class:`Splits` from :func:`load`.
    batch_size: images per batch, at most the training set size.
    seed: a Python int or a stateless seed (shape [2] int); None draws one
      from the global RNG.

  Returns:
    ``tf.data.Dataset`` of float32 ``[batch_size, 784]`` 0/1 batches,
    repeated forever, prefetched.
  """
  images = tf.constant(splits.train)
  num_images = int(images.shape[0])
  batch_size = _check_batch_size(batch_size)
  if batch_size > num_images:
    raise ValueError(f"`batch_size`={batch_size} exceeds the {num_images} "
                     f"training images of {splits.name!r}.")
  batches_per_epoch = num_images // batch_size
  shuffle_seed, noise_seed = _core.split_seed(_core.resolve_seed(seed), 2)
  dynamic = splits.dynamic

  def epoch_order(epoch):
    """Image indices of one epoch, ``[batches_per_epoch, batch_size]``."""
    order = tf.random.experimental.index_shuffle(
        tf.range(batches_per_epoch * batch_size, dtype=tf.int64),
        seed=tf.random.experimental.stateless_fold_in(shuffle_seed, epoch),
        max_index=tf.constant(num_images - 1, tf.int64))
    return tf.reshape(order, [batches_per_epoch, batch_size])

  def make_batches(group, indices):
    """Gathers (and binarizes) ``[batches, batch_size, 784]`` at once."""
    batches = tf.gather(images, indices)
    if dynamic:
      batches = binarize(
          batches, tf.random.experimental.stateless_fold_in(noise_seed, group))
    return batches

  return (tf.data.Dataset.counter()
          .map(epoch_order)
          .flat_map(tf.data.Dataset.from_tensor_slices)
          .batch(max(1, _ROWS_PER_CALL // batch_size), drop_remainder=True)
          .enumerate()
          .map(make_batches, num_parallel_calls=tf.data.AUTOTUNE)
          .flat_map(tf.data.Dataset.from_tensor_slices)
          .prefetch(tf.data.AUTOTUNE))


def eval_batches(images, batch_size: int) -> tf.data.Dataset:
  """Batches of fixed evaluation images, in order, last batch possibly short.

  Args:
    images: array ``[N, 784]``, e.g. ``splits.fixed_eval_set("test")``.
    batch_size: images per batch.

  Returns:
    ``tf.data.Dataset`` of float32 ``[<=batch_size, 784]`` batches covering
    every image exactly once.
  """
  images = np.asarray(images, dtype=np.float32)
  batch_size = _check_batch_size(batch_size)
  return (tf.data.Dataset.from_tensor_slices(images)
          .batch(batch_size)
          .prefetch(tf.data.AUTOTUNE))
