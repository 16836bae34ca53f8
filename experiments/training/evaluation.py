"""Evaluation: the mean bound over a set of images, compiled once per set.

Each set is evaluated in chunks of images, all samples of a chunk in one
batched pass; chunks are spread over the replicas of the strategy.
"""

import dataclasses
from typing import Callable, Dict, Sequence, Tuple

import numpy as np
import tensorflow as tf

from experiments.training import distribute
from tf_discrete import _core


@dataclasses.dataclass(frozen=True, eq=False)
class EvalSet:
  """One evaluation metric: the mean bound over a set of images.

  Attributes:
    name: metric name, e.g. "test_iwae".
    images: float32 ``[N, D]``.
    num_samples: samples of the bound (1: ELBO).
    binarize: draw Bernoulli(images) afresh at each evaluation (grey-level
      training images); False for already binary sets.
  """
  name: str
  images: np.ndarray
  num_samples: int
  binarize: bool = False


def chunking(eval_set: EvalSet, eval_rows: int) -> Tuple[int, int]:
  """(images per chunk, chunks) of ``eval_set``: as many images as fit
  ``eval_rows`` sample-rows, at least one."""
  num_images = int(eval_set.images.shape[0])
  chunk = max(1, min(num_images, eval_rows // eval_set.num_samples))
  return chunk, -(-num_images // chunk)


class Evaluator:
  """The compiled evaluation functions of a model's evaluation sets."""

  def __init__(self, model, eval_sets: Sequence[EvalSet], strategy, *,
               eval_rows: int, binarize: Callable, jit_compile: bool):
    self.model, self.strategy = model, strategy
    self.eval_sets = list(eval_sets)
    self.eval_rows = eval_rows
    self._binarize = binarize
    with strategy.scope():
      self._images = [tf.Variable(np.asarray(s.images, np.float32),
                                  trainable=False) for s in self.eval_sets]
    outer_jit, inner = distribute.compilers(strategy, jit_compile)
    self._fns = [
        tf.function(self._make_eval(inner(self._make_replica(i, s)), s),
                    jit_compile=outer_jit)
        for i, s in enumerate(self.eval_sets)]

  def chunks(self, eval_set: EvalSet) -> Tuple[int, int]:
    return chunking(eval_set, self.eval_rows)

  def _make_replica(self, index, eval_set):
    num_images = int(eval_set.images.shape[0])
    chunk, num_chunks = self.chunks(eval_set)
    images = self._images[index]

    def replica_fn(seed):
      """Sum of the bound over this replica's chunks (chunk c: c % R == r)."""
      data_seed, sample_seed = _core.split_seed(seed, 2)
      total = tf.constant(0.0)
      for c in tf.range(distribute.replica_id(), num_chunks,
                        self.strategy.num_replicas_in_sync):
        rows = c * chunk + tf.range(chunk)
        x = tf.gather(images, tf.minimum(rows, num_images - 1))
        if eval_set.binarize:
          x = self._binarize(x, distribute.fold_seed(data_seed, c))
        bound = self.model.log_likelihood_bound(
            x, eval_set.num_samples, distribute.fold_seed(sample_seed, c))
        total += tf.reduce_sum(tf.where(rows < num_images, bound, 0.0))
      return total

    return replica_fn

  def _make_eval(self, replica_fn, eval_set):
    num_images = float(eval_set.images.shape[0])

    def eval_fn(seed):
      total = self.strategy.reduce(
          tf.distribute.ReduceOp.SUM,
          self.strategy.run(replica_fn, args=(seed,)), axis=None)
      return total / num_images

    return eval_fn

  def __call__(self, seed) -> Dict[str, float]:
    """Every set's mean bound, set i seeded by ``fold(seed, i)``."""
    return {s.name: float(fn(distribute.fold_seed(seed, i)))
            for i, (s, fn) in enumerate(zip(self.eval_sets, self._fns))}
