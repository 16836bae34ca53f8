"""What the loop measures besides the bounds: gradient moments and bias.

* :class:`GradientMoments`: exponential moving averages (decay 0.999,
  bias-corrected) of :math:`g` and :math:`g^2` of the batch-mean gradient of
  the model's variance group (the encoder, whose gradient comes from the
  estimator), updated in-graph every step; reported variance = mean over
  parameters of :math:`E[g^2] - E[g]^2`. With a gradient basket the same
  bookkeeping runs for other estimators' gradients on the same batches.
* :class:`BiasMonitor`: at every evaluation, the mean of many estimator
  gradients on a fixed batch against an unbiased low-variance reference
  (the configuration is a :class:`BiasCheck`).
"""

import dataclasses
from typing import Dict, Mapping, Sequence

import numpy as np
import tensorflow as tf

from experiments.training import distribute
from experiments.training import step as step_lib
from tf_discrete import _core


class GradientMoments(tf.Module):
  """In-graph EMAs of g and g^2 for named gradient lists (same shapes).

  Variables are replica-local (``ON_READ``): every replica applies the same
  all-reduced gradient, reads and checkpoints take the first replica's.
  """

  def __init__(self, names: Sequence[str], like: Sequence[tf.Variable],
               decay: float):
    super().__init__(name="gradient_moments")
    kw = dict(trainable=False,
              synchronization=tf.VariableSynchronization.ON_READ,
              aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
    self.decay = decay
    self.count = tf.Variable(0.0, **kw)
    self.first = {n: [tf.Variable(tf.zeros(v.shape), **kw) for v in like]
                  for n in names}
    self.second = {n: [tf.Variable(tf.zeros(v.shape), **kw) for v in like]
                   for n in names}

  def update(self, grads: Mapping[str, Sequence[tf.Tensor]]):
    self.count.assign_add(1.0)
    for name, gs in grads.items():
      for m1, m2, g in zip(self.first[name], self.second[name], gs):
        m1.assign(self.decay * m1 + (1 - self.decay) * g)
        m2.assign(self.decay * m2 + (1 - self.decay) * tf.square(g))

  def variances(self) -> Dict[str, float]:
    """Mean over parameters of E[g^2] - E[g]^2 (bias-corrected EMAs)."""
    count = float(self.count.numpy())
    if count == 0:
      return {}
    correction = 1.0 - self.decay**count
    out = {}
    for name in self.first:
      total, size = 0.0, 0
      for m1, m2 in zip(self.first[name], self.second[name]):
        mean = m1.numpy() / correction
        total += float(np.sum(m2.numpy() / correction - mean**2))
        size += mean.size
      out[name] = total / size
    return out

  def metrics(self) -> Dict[str, float]:
    """``grad_variance`` (the model's estimator) and
    ``grad_variance/<name>`` per basket estimator."""
    return {("grad_variance" if name == "main" else f"grad_variance/{name}"):
            value for name, value in self.variances().items()}


@dataclasses.dataclass(frozen=True, eq=False)
class BiasCheck:
  """Compares the mean of many estimator gradients with a reference.

  On a fixed batch, at every evaluation: the mean of ``repeats`` gradients
  of the variance group by the model's estimator, and the mean of
  ``reference_repeats`` gradients by ``reference_estimator`` with
  ``reference_num_samples`` samples (an unbiased, low-variance reference).
  Logged: ``bias_check/relative_error`` = |mean - reference| / |reference|
  and ``bias_check/relative_noise`` = sqrt(E|mean - reference|^2) /
  |reference| for an unbiased estimator, from the sample variances of both
  means. An error well above the noise indicates bias.
  """
  images: np.ndarray
  reference_estimator: str = "rloo"
  reference_num_samples: int = 100
  repeats: int = 1000
  reference_repeats: int = 100


class BiasMonitor:
  """Runs a :class:`BiasCheck` on a model (compiled like the step)."""

  def __init__(self, check: BiasCheck, model, groups, strategy,
               jit_compile: bool):
    self.check, self.model, self.groups = check, model, groups
    self.strategy = strategy
    with strategy.scope():
      self._images = tf.Variable(np.asarray(check.images, np.float32),
                                 trainable=False)
    outer_jit, inner = distribute.compilers(strategy, jit_compile)
    replica_fn = inner(self._replica_sums)
    self._fn = tf.function(
        lambda seed: strategy.reduce(
            tf.distribute.ReduceOp.SUM,
            strategy.run(replica_fn, args=(seed,)), axis=None),
        jit_compile=outer_jit)

  def _replica_sums(self, seed):
    """Sums of g, g^2 over this replica's repeats: estimator, reference."""
    check = self.check
    group = self.model.variance_group
    main_seed, reference_seed = _core.split_seed(seed, 2)

    def flat_gradient(seed, estimator=None, num_samples=None):
      grads, _ = step_lib.model_gradients(
          self.model, self.groups, self._images, seed, estimator,
          num_samples, only=[group])
      return tf.concat([tf.reshape(g, [-1]) for g in grads[group]], 0)

    size = sum(int(np.prod(v.shape)) for v in self.groups[group])
    replica = distribute.replica_id()
    replicas = self.strategy.num_replicas_in_sync

    def moments(repeats, seed, estimator=None, num_samples=None):
      sums = tf.zeros([2, size])
      for i in tf.range(replica, repeats, replicas):
        g = flat_gradient(distribute.fold_seed(seed, i), estimator,
                          num_samples)
        sums += tf.stack([g, tf.square(g)])
      return sums

    return tf.concat([
        moments(check.repeats, main_seed),
        moments(check.reference_repeats, reference_seed,
                check.reference_estimator, check.reference_num_samples)], 0)

  def metrics(self, seed) -> Dict[str, float]:
    """``bias_check/relative_error`` and ``bias_check/relative_noise``."""
    check = self.check
    sums = self._fn(seed).numpy().astype(np.float64)
    mean, mean_sq = sums[0] / check.repeats, sums[1] / check.repeats
    ref, ref_sq = (sums[2] / check.reference_repeats,
                   sums[3] / check.reference_repeats)
    # Squared error expected from noise alone: the variances of both means.
    noise = (np.maximum(mean_sq - mean**2, 0).sum() / check.repeats +
             np.maximum(ref_sq - ref**2, 0).sum() / check.reference_repeats)
    norm = np.linalg.norm(ref)
    return {
        "bias_check/relative_error": float(np.linalg.norm(mean - ref) / norm),
        "bias_check/relative_noise": float(np.sqrt(noise) / norm),
    }
