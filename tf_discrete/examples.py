"""Small models built from the latent layers, used by the README and demo.

They show the intended way of stacking :mod:`tf_discrete.layers` into Keras
models: the ELBO is the objective handed to a latent layer; the layer returns
its estimate and attaches the estimator gradient to the encoder logits, while
decoder and prior weights get the ordinary pathwise gradient.

The models carry an :class:`EstimateLoss`: their output is the per-example
estimate of the objective they maximise, and they carry their loss (its
negated mean), so ``model.compile(optimizer)``, ``model.fit(images)`` and
``model.evaluate(images)`` work with no targets, and the ELBO is reported
as the metric ``elbo``.
"""

import keras
import tensorflow as tf

from tf_discrete import layers


def bernoulli_log_prob(values, logits):
  """log Bernoulli(values; sigmoid(logits)) summed over the last axis.

  ``-softplus(-(2v - 1) * logits)`` is finite for any finite logits.
  """
  return -tf.reduce_sum(tf.math.softplus(-(2.0 * values - 1.0) * logits), -1)


class EstimateLoss:
  """Mixin for a ``keras.Model`` whose output ``[batch]`` is an estimate to
  maximise (an ELBO).

  The loss is ``-mean(output)`` (plus any ``add_loss`` terms), so the model
  trains with ``fit(x)`` alone; ``elbo`` (the mean output) is tracked as a
  metric in ``fit`` and ``evaluate``. A mixin rather than a Model subclass
  because Keras rewrites the bases of a Model subclass built functionally,
  which would break its subclassed uses.
  """

  def __init__(self, *args, **kwargs):
    super().__init__(*args, **kwargs)
    self.elbo_tracker = keras.metrics.Mean(name="elbo")

  def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None,
                   training=True):
    del x, y, sample_weight, training
    estimate = tf.reduce_mean(y_pred)
    self.elbo_tracker.update_state(estimate)
    loss = -estimate
    if self.losses:
      loss += tf.add_n(self.losses)
    return loss

  def compute_metrics(self, x, y, y_pred, sample_weight=None):
    del x, y, y_pred, sample_weight
    return {m.name: m.result() for m in self.metrics}

  @property
  def metrics(self):
    return [m for m in super().metrics if m is not self.elbo_tracker] + [
        self.elbo_tracker]


@keras.saving.register_keras_serializable(package="tf_discrete")
class EstimateModel(EstimateLoss, keras.Model):
  """A functional model over an estimate: ``EstimateModel(inputs, outputs)``
  with ``outputs`` the per-example estimate (see :class:`EstimateLoss`)."""


@keras.saving.register_keras_serializable(package="tf_discrete")
class BernoulliElbo(keras.layers.Layer):
  """One-sample ELBO term f(b) = log p(x|b) + log p(b) - log q(b|x).

  Call as ``elbo(samples, [x, encoder_logits])`` with ``samples [S, B, D]``;
  returns ``[S, B]``. The gradient through log q is stopped: its expectation
  is zero, so it only adds variance (see ``tf_discrete.bernoulli.estimate``).
  """

  def __init__(self, data_dim, **kwargs):
    super().__init__(**kwargs)
    self.data_dim = data_dim
    self.decoder = keras.layers.Dense(data_dim, name="decoder")

  def build(self, samples_shape, context_shape=None):
    latent_dim = samples_shape[-1]
    self.prior_logits = self.add_weight(
        shape=(latent_dim,), initializer="zeros", name="prior_logits")
    self.decoder.build((None, latent_dim))

  def call(self, samples, context):
    x, encoder_logits = context
    x_logits = self.decoder(2.0 * samples - 1.0)
    log_px = bernoulli_log_prob(x, x_logits)
    log_pb = bernoulli_log_prob(samples, self.prior_logits)
    log_qb = bernoulli_log_prob(samples, tf.stop_gradient(encoder_logits))
    return log_px + log_pb - log_qb

  def get_config(self):
    return {**super().get_config(), "data_dim": self.data_dim}


def functional_bernoulli_vae(data_dim=784, latent_dim=200,
                             estimator="disarm", seed=None):
  """A one-stochastic-layer VAE as a functional :class:`EstimateModel`;
  outputs the ELBO estimate and trains with ``fit(images)``."""
  x = keras.Input((data_dim,), name="x")
  logits = keras.layers.Dense(latent_dim, name="encoder")(x)
  latent = layers.BernoulliLatent(
      estimator, seed=seed, objective=BernoulliElbo(data_dim), name="latent")
  elbo = latent(logits, context=[x, logits])
  return EstimateModel(x, elbo, name="bernoulli_vae")


@keras.saving.register_keras_serializable(package="tf_discrete")
class TwoLayerBernoulliVAE(EstimateLoss, keras.Model):
  """x -> b1 -> b2 with two stochastic layers (subclassed model).

  q(b1|x) q(b2|b1) and p(b2) p(b1|b2) p(x|b1). Each latent layer estimates
  its own logits' gradient, one stochastic layer at a time: layer 2's
  objective holds b1 at its forward sample; layer 1's objective re-samples
  b2 for each of its samples.
  The model returns the ELBO estimate of layer 1 (whose pathwise gradient
  trains the decoders) plus layer 2's estimate minus its own value: zero in
  the forward pass, layer 2's estimator gradient in the backward pass.
  """

  def __init__(self, data_dim=784, latent_dim=50, estimator="disarm",
               seed=None, **kwargs):
    super().__init__(**kwargs)
    self._arguments = dict(data_dim=data_dim, latent_dim=latent_dim,
                           estimator=estimator, seed=seed)
    self.encoder1 = keras.layers.Dense(latent_dim)
    self.encoder2 = keras.layers.Dense(latent_dim)
    self.decoder1 = keras.layers.Dense(data_dim)  # p(x|b1)
    self.decoder2 = keras.layers.Dense(latent_dim)  # p(b1|b2)
    self.prior_logits = self.add_weight(shape=(latent_dim,),
                                        initializer="zeros")
    self.latent1 = layers.BernoulliLatent(estimator, seed=seed)
    self.latent2 = layers.BernoulliLatent(
        estimator, seed=None if seed is None else seed + 1)
    self.sampler = layers.BernoulliLatent(
        estimator, seed=None if seed is None else seed + 2)

  def get_config(self):
    return {"name": self.name, "trainable": self.trainable,
            **self._arguments}

  def _elbo(self, x, b1, b2, logits1, logits2):
    """Full two-layer ELBO, broadcasting over leading sample axes."""
    return (bernoulli_log_prob(x, self.decoder1(2.0 * b1 - 1.0))
            + bernoulli_log_prob(b1, self.decoder2(2.0 * b2 - 1.0))
            + bernoulli_log_prob(b2, self.prior_logits)
            - bernoulli_log_prob(b1, tf.stop_gradient(logits1))
            - bernoulli_log_prob(b2, tf.stop_gradient(logits2)))

  def call(self, x):
    logits1 = self.encoder1(x)
    b1 = self.sampler(logits1)
    logits2 = self.encoder2(2.0 * b1 - 1.0)

    def layer1_objective(b1_samples):
      # Layers below are re-sampled conditionally on each b1 sample.
      logits2_s = self.encoder2(2.0 * b1_samples - 1.0)
      b2_s = self.sampler(logits2_s)
      return self._elbo(x, b1_samples, b2_s, logits1, logits2_s)

    def layer2_objective(b2_samples):
      # Constant objective: decoders already get their gradient from layer
      # 1's estimate, so layer 2 contributes only its estimator gradient.
      return tf.stop_gradient(
          self._elbo(x, b1, b2_samples, logits1, logits2))

    elbo = self.latent1(logits1, objective=layer1_objective)
    layer2 = self.latent2(logits2, objective=layer2_objective)
    return elbo + layer2 - tf.stop_gradient(layer2)
