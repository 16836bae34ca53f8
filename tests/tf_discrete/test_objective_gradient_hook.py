"""run_estimator for estimators that need the objective's gradient w.r.t.
its samples: one batched call on differentiable samples, the estimator's
own gradient attached on top, a clear error when the objective is not
differentiable in the samples."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from tf_discrete import _core
from tf_discrete import bernoulli
from tf_discrete.facts import Cost
from tf_discrete.facts import Estimates
from tf_discrete.facts import Facts


@dataclasses.dataclass(frozen=True)
class _Noise:
  u: tf.Tensor


def _toy_family(extra_gradient=0.0):
  """A family with one estimator: samples u (constant noise) forward, and
  d samples / d logits = 3 (a straight-through surrogate), plus
  ``extra_gradient`` attached by ``gradient``."""
  registry = _core.Registry("toy")

  @registry.register
  class Surrogate(_core.Estimator):
    name = "surrogate"
    facts = Facts(Estimates.MEAN, Cost(default=2), unbiased=False,
                  needs_objective_gradient=True, paper="none")

    def sample(self, logits, num_samples, seed):
      shape = tf.concat([[num_samples], tf.shape(logits)], 0)
      u = _core.uniform(shape, seed, logits.dtype)
      return _core.Draw(u, _Noise(u))

    def objective_samples(self, logits, draw):
      @tf.custom_gradient
      def forward(x):
        def grad(upstream):
          return 3.0 * tf.reduce_sum(upstream, 0)
        return tf.identity(draw.samples), grad
      return forward(logits)

    def gradient(self, values, draw, logits):
      return extra_gradient * tf.ones_like(logits)

  return dataclasses.replace(bernoulli.FAMILY, name="toy", registry=registry)


def test_gradient_reaches_the_logits_through_the_objective():
  family = _toy_family(extra_gradient=0.5)
  logits = tf.constant([[0.1, 0.2, 0.3], [0.0, -1.0, 2.0]])
  weights = tf.Variable([1.0, -2.0, 4.0])
  calls = []

  def objective(samples):
    calls.append(samples)
    return tf.reduce_sum(samples**2 * weights, -1)

  with tf.GradientTape() as tape:
    tape.watch(logits)
    value = _core.run_estimator(family, objective, logits, "surrogate", None,
                                3, {})
    total = tf.reduce_sum(value)
  d_logits, d_weights = tape.gradient(total, [logits, weights])
  assert len(calls) == 1 and calls[0].shape == (2, 2, 3)
  u = calls[0].numpy()
  np.testing.assert_allclose(value, np.mean(np.sum(u**2 * [1, -2, 4], -1), 0),
                             rtol=1e-6)
  # Chain rule through f (d f / d u = 2 u w, averaged over the 2 samples),
  # times the surrogate 3, plus the attached 0.5.
  expected = 3.0 * np.sum(2 * u * [1, -2, 4] / 2, 0) + 0.5
  np.testing.assert_allclose(d_logits, expected, rtol=1e-5)
  # The objective's own variables: the ordinary pathwise gradient.
  np.testing.assert_allclose(d_weights, np.sum(np.mean(u**2, 0), 0),
                             rtol=1e-5)


def test_objective_not_differentiable_in_samples_is_refused():
  family = _toy_family()
  with pytest.raises(ValueError, match="Estimator 'surrogate' needs the "
                     "gradient of `objective`.*stop_gradient"):
    _core.run_estimator(family, lambda s: tf.reduce_sum(tf.stop_gradient(s),
                                                        -1),
                        tf.zeros([2, 3]), "surrogate", None, 0, {})


def test_output_shape_still_checked_first():
  family = _toy_family()
  with pytest.raises(ValueError, match="`objective`.*shape"):
    _core.run_estimator(family, lambda s: s, tf.zeros([2, 3]), "surrogate",
                        None, 0, {})


def test_check_is_free_inside_a_compiled_function():
  """The unused connectivity check leaves the compiled result unchanged."""
  family = _toy_family(extra_gradient=0.25)
  logits = tf.constant([[0.1, 0.2, 0.3]])

  def run(logits):
    with tf.GradientTape() as tape:
      tape.watch(logits)
      value = _core.run_estimator(family, lambda s: tf.reduce_sum(s**3, -1),
                                  logits, "surrogate", None, 7, {})
    return value, tape.gradient(value, logits)

  eager = run(logits)
  xla = tf.function(run, jit_compile=True)(logits)
  np.testing.assert_allclose(eager[0], xla[0], rtol=1e-6)
  np.testing.assert_allclose(eager[1], xla[1], rtol=1e-6)


def test_trainable_state_without_its_own_hook_is_refused():
  registry = _core.Registry("toy")

  @registry.register
  class Learned(_core.Estimator):
    name = "learned"
    facts = Facts(Estimates.MEAN, Cost(default=1), unbiased=True,
                  needs_objective_gradient=True, trainable_state=True,
                  paper="none")

    def sample(self, logits, num_samples, seed):
      return _core.Draw(tf.zeros([num_samples, 3]))

    def gradient(self, values, draw, logits):
      raise AssertionError("not reached")

  family = dataclasses.replace(bernoulli.FAMILY, name="toy",
                               registry=registry)
  with pytest.raises(NotImplementedError, match="'learned'.*trainable"):
    _core.run_estimator(family, lambda b: b[..., 0], tf.zeros([3]),
                        "learned", None, 0, {})
