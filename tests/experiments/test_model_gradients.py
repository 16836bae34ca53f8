"""Every unbiased estimator, at the model level, against exact gradients.

For each estimator the registry declares unbiased (both families, present
and future: the cases are read from the registry, so an estimator is
covered the day it is registered), the VAE's surrogate gradient on a tiny
model is averaged over many seeds and compared with the gradient of the
exact objective, computed by enumerating every latent state:

* estimators of E_q[f] (``Estimates.MEAN``): the ELBO;
* estimators of a K-sample bound (``Estimates.BOUND``): E[log mean_k
  exp f(b_k)] over K independent samples, whose gradient includes the
  pathwise gradient of -log q inside f.

Two statistics, both on every parameter group (encoder, decoder, prior):

* per coordinate, a z-test of the mean against the exact value;
* the projection of each seeded gradient onto the exact one,
  <g, e> / <e, e>, whose mean must be 1 within 4 standard errors, with
  enough seeds that the standard error is at most 1.25%: a 5% error of
  scale (a missing 1/2, a dropped term, a wrong weight) fails it.
"""

import numpy as np
import pytest
import tensorflow as tf

import tf_discrete
from experiments.models import bernoulli as bernoulli_model
from experiments.models import categorical as categorical_model
from experiments.models import networks
from experiments.models import estimator_state
from tf_discrete import bernoulli
from tf_discrete import categorical

# Largest standard error of the projection: a 5% bias is then >= 4 s.e.
MAX_PROJECTION_SE = 0.0125
MAX_RUNS = 64_000
RUNS_PER_BATCH = 4_000


def _unbiased(family):
  return [name for name, est in family.REGISTRY.items()
          if est.facts.unbiased]


def _estimated_variables(model):
  """The variables whose gradient estimates the objective's: every group
  but an estimator's control-variate parameters, whose gradient is that of
  the estimator's variance (tested in test_control_variates_train_in_the_model)."""
  groups = model.parameter_groups()
  return [v for name in sorted(groups)
          if name != estimator_state.CONTROL_VARIATE_GROUP
          for v in groups[name]]


def _flat(grads):
  return tf.concat([tf.reshape(g, [-1]) for g in grads], 0)


def _check(exact, sampler):
  """Draws batches of seeded gradients until the projection's standard
  error is small enough; asserts both statistics."""
  exact = np.asarray(exact, np.float64)
  norm2 = float(exact @ exact)
  total, total2, proj, proj2, runs, batch = 0.0, 0.0, 0.0, 0.0, 0, 0
  while True:
    s1, s2, p1, p2 = (t.numpy().astype(np.float64)
                      for t in sampler(tf.constant(batch)))
    total, total2 = total + s1, total2 + s2
    proj, proj2 = proj + p1, proj2 + p2
    runs, batch = runs + RUNS_PER_BATCH, batch + 1
    p_mean = proj / runs
    p_se = np.sqrt(max(proj2 / runs - p_mean**2, 0.0) / runs)
    if p_se <= MAX_PROJECTION_SE or runs >= MAX_RUNS:
      break
  assert p_se <= MAX_PROJECTION_SE, (
      f"projection s.e. {p_se:.4f} after {runs} runs: too noisy to detect a "
      f"5% bias")
  assert abs(p_mean - 1.0) < 4 * p_se, (
      f"mean projection on the exact gradient {p_mean:.4f} +- {p_se:.4f}")
  mean = total / runs
  se = np.sqrt(np.maximum(total2 / runs - mean**2, 0.0) / runs)
  z = (mean - exact) / (se + 1e-7 + 1e-4 * np.abs(exact))
  assert np.all(np.abs(z) < 5.5), (np.abs(z).max(), int(np.abs(z).argmax()))
  return p_mean, p_se, runs


def _sampler(surrogate_fn, variables, exact):
  """Sums of g, g^2, projection and projection^2 over a batch of seeds."""
  exact = tf.constant(exact, tf.float32)
  norm2 = tf.reduce_sum(exact * exact)
  size = int(exact.shape[0])

  @tf.function(jit_compile=True)
  def batch(index):
    def body(i, s1, s2, p1, p2):
      with tf.GradientTape() as tape:
        surrogate = surrogate_fn(tf.stack([index, i]))
      g = _flat(tape.gradient(surrogate, variables,
                              unconnected_gradients="zero"))
      p = tf.reduce_sum(g * exact) / norm2
      return i + 1, s1 + g, s2 + g * g, p1 + p, p2 + p * p

    _, s1, s2, p1, p2 = tf.while_loop(
        lambda i, *_: i < RUNS_PER_BATCH, body,
        (0, tf.zeros([size]), tf.zeros([size]), 0.0, 0.0))
    return s1, s2, p1, p2

  return batch


# --------------------------------------------------------------------------
# Bernoulli VAE.


def _bernoulli_model(estimator, num_layers=1, **kwargs):
  config = bernoulli_model.BernoulliVAEConfig(
      estimator=estimator, num_layers=num_layers, latent_dim=3, data_dim=5,
      encoder_type="linear", **kwargs)
  model = bernoulli_model.BernoulliVAE(
      config, np.linspace(0.1, 0.9, 5).astype(np.float32), seed=0)
  rng = np.random.RandomState(1)
  for v in model.trainable_variables:
    v.assign(np.asarray(0.7 * rng.randn(*v.shape), np.float32))
  return model


def _bernoulli_batch():
  rng = np.random.RandomState(0)
  return tf.constant((rng.rand(2, 5) < 0.5).astype(np.float32))


def _layer_states(model, x):
  """Every joint state of the stochastic layers: samples, logits and
  log q, each layer varying along its own leading axis."""
  cfg = model.config
  states = bernoulli.FAMILY.enumerate_states([cfg.latent_dim])
  n, num_layers = states.shape[0], cfg.num_layers
  log_q, below, samples, logits = 0.0, x, [], []
  for layer in range(num_layers):
    shape = [1] * num_layers + [1, cfg.latent_dim]
    shape[layer] = n
    b = tf.broadcast_to(tf.reshape(states, shape),
                        [n] * num_layers + [x.shape[0], cfg.latent_dim])
    lg = model.encoder_logits(layer, below)
    log_q += bernoulli.FAMILY.log_prob(b, lg)
    samples.append(b)
    logits.append(lg)
    below = b
  return samples, logits, log_q


def exact_bernoulli_objective(model, x, bound_terms):
  """E over K = ``bound_terms`` independent samples of log mean_k e^{f_k}
  (K = 1: the ELBO), by enumeration; batch mean."""
  samples, logits, log_q = _layer_states(model, x)
  f = model.elbo_terms(0, x, samples, logits, pathwise_log_q=True)
  log_q = tf.reshape(log_q, [-1, x.shape[0]])
  f = tf.reshape(f, [-1, x.shape[0]])
  n = f.shape[0]
  # K independent samples: axis k of a [n] * K grid holds sample k's state.
  total_log_q, terms = 0.0, []
  for k in range(bound_terms):
    shape = [1] * bound_terms + [x.shape[0]]
    shape[k] = n
    total_log_q += tf.reshape(log_q, shape)
    terms.append(tf.broadcast_to(tf.reshape(f, shape),
                                 [n] * bound_terms + [x.shape[0]]))
  value = tf.reduce_logsumexp(tf.stack(terms), 0) - np.log(bound_terms)
  exact = tf.reduce_sum(tf.exp(total_log_q) * value,
                        axis=list(range(bound_terms)))
  return tf.reduce_mean(exact)


# Two stochastic layers for estimators of E_q[f] whose objective need not be
# differentiable in the samples (the layers below are re-sampled by
# thresholding).
BERNOULLI_CASES = [(name, 1) for name in _unbiased(bernoulli)] + [
    (name, 2) for name in _unbiased(bernoulli)
    if bernoulli.get(name).facts.estimates is tf_discrete.Estimates.MEAN
    and not bernoulli.get(name).facts.needs_objective_gradient]


@pytest.mark.parametrize("estimator,num_layers", BERNOULLI_CASES)
def test_bernoulli_vae_gradient_is_exact(estimator, num_layers):
  est = bernoulli.get(estimator)
  model = _bernoulli_model(estimator, num_layers)
  x = _bernoulli_batch()
  evaluations = est.evaluations(None, [3])
  terms = est.facts.bound_terms(evaluations)
  variables = _estimated_variables(model)
  with tf.GradientTape() as tape:
    exact = exact_bernoulli_objective(model, x, terms)
  exact_grad = _flat(tape.gradient(exact, variables)).numpy()
  sampler = _sampler(lambda seed: model.training_objective(x, seed)[0],
                     variables, exact_grad)
  _check(exact_grad, sampler)


# --------------------------------------------------------------------------
# Categorical VAE.


def _categorical_model(estimator, decoder_grad):
  # An objective differentiable in its samples needs the one-hot decoder
  # input.
  config = categorical_model.CategoricalVAEConfig(
      estimator=estimator, encoder_type="linear", num_variables=2,
      num_categories=4, data_dim=6, decoder_grad=decoder_grad,
      one_hot=categorical.get(estimator).facts.needs_objective_gradient)
  model = categorical_model.CategoricalVAE(config,
                                           np.full(6, 0.4, np.float32), seed=1)
  rng = np.random.RandomState(2)
  for v in model.trainable_variables:
    v.assign(np.asarray(0.7 * rng.randn(*v.shape), np.float32))
  return model


def exact_categorical_elbo(model, x):
  states = categorical.FAMILY.enumerate_states(model.config.event_shape)
  z = tf.broadcast_to(states[:, None],
                      [states.shape[0], x.shape[0]] + model.config.event_shape)
  logits = model.encoder_logits(x)
  q = tf.exp(categorical.FAMILY.log_prob(z, logits))
  return tf.reduce_mean(tf.reduce_sum(q * model.elbo(x, z, logits), 0))


# The separate-sample decoder gradient stops the objective's gradient in the
# samples, which some estimators need.
CATEGORICAL_CASES = [
    (name, grad) for name in _unbiased(categorical)
    for grad in networks.DECODER_GRADS
    if grad == networks.ESTIMATOR_SAMPLES
    or not categorical.get(name).facts.needs_objective_gradient]


@pytest.mark.parametrize("estimator,decoder_grad", CATEGORICAL_CASES)
def test_categorical_vae_gradient_is_exact(estimator, decoder_grad):
  model = _categorical_model(estimator, decoder_grad)
  rng = np.random.RandomState(0)
  x = tf.constant((rng.rand(2, 6) < 0.5).astype(np.float32))
  variables = _estimated_variables(model)
  with tf.GradientTape() as tape:
    exact = exact_categorical_elbo(model, x)
  exact_grad = _flat(tape.gradient(exact, variables)).numpy()
  sampler = _sampler(lambda seed: model.training_objective(x, seed)[0],
                     variables, exact_grad)
  _check(exact_grad, sampler)




# --------------------------------------------------------------------------
# Learned control variates inside the models.

CONTROL_VARIATE_CASES = [
    (family, name) for family in (bernoulli, categorical)
    for name, est in family.REGISTRY.items() if est.facts.trainable_state]


def _control_variate_model(family, estimator):
  if family is bernoulli:
    model = _bernoulli_model(estimator)
    return model, _bernoulli_batch()
  model = _categorical_model(estimator, networks.ESTIMATOR_SAMPLES)
  rng = np.random.RandomState(0)
  return model, tf.constant((rng.rand(2, 6) < 0.5).astype(np.float32))


def _encoder_variance(model, x, seeds=400):
  """Summed variance of the encoder gradient over ``seeds`` seeds."""
  encoder = model.parameter_groups()["encoder"]
  size = sum(int(np.prod(v.shape)) for v in encoder)

  @tf.function(jit_compile=True)
  def moments():
    def body(i, s1, s2):
      with tf.GradientTape() as tape:
        surrogate = model.training_objective(x, tf.stack([7, i]))[0]
      g = _flat(tape.gradient(surrogate, encoder))
      return i + 1, s1 + g, s2 + g * g

    _, s1, s2 = tf.while_loop(lambda i, *_: i < seeds, body,
                              (0, tf.zeros([size]), tf.zeros([size])))
    return s1 / seeds, s2 / seeds

  mean, mean2 = (t.numpy().astype(np.float64) for t in moments())
  return float(np.sum(mean2 - mean**2))


@pytest.mark.parametrize("family,estimator", CONTROL_VARIATE_CASES,
                         ids=lambda v: getattr(v, "__name__", v))
def test_control_variates_train_in_the_model(family, estimator):
  """The model holds the estimator's control-variate parameters as their own
  parameter group; descending their gradient (what the training loop's
  optimizer does) lowers the encoder gradient's variance, and the model's
  gradient stays exact (tested above, with random control-variate values)."""
  model, x = _control_variate_model(family, estimator)
  groups = model.parameter_groups()
  control = groups[estimator_state.CONTROL_VARIATE_GROUP]
  assert control and all(v.trainable for v in control)
  # The estimator's state is the model's, by identity.
  assert {id(v) for v in control} == {
      id(v) for v in model.estimator_state.control_variate_variables}
  before = _encoder_variance(model, x)
  optimizer = tf.keras.optimizers.Adam(1e-2, beta_1=0.999)

  optimizer.build(control)

  @tf.function(jit_compile=True)
  def train(steps):
    def body(i):
      with tf.GradientTape() as tape:
        loss = -model.training_objective(x, tf.stack([3, i]))[0]
      optimizer.apply(tape.gradient(loss, control), control)
      return (i + 1,)

    tf.while_loop(lambda i: i < steps, body, (0,))

  train(300)
  after = _encoder_variance(model, x)
  assert after < 0.9 * before, (before, after)
