r"""A DisARM training step written the way the original research code writes it.

A yardstick for ``experiments.benchmark``, not a way to train: it shows
how our step compares with the step of the original launcher's style, timed
on the same machine in the same run. What makes that style slow is kept on
purpose, and each item is the opposite of a choice in ``tf_discrete``:

* Keras ``Dense`` stacks, called layer by layer;
* ``tf.function`` without XLA, called from Python once per step;
* a separate decoder pass for the decoder/prior-gradient sample, and one
  more for each member of the antithetic pair (three decoder passes where
  ``tf_discrete`` makes one batched pass over two samples);
* the encoder gradient through ``tape.gradient(..., output_gradients=...)``
  of the encoder logits;
* three optimizers (encoder Adam, decoder Adam, prior SGD), each applied
  separately;
* EMA gradient-variance bookkeeping on every step.

The estimate is DisARM (Dong, Mnih, Tucker, NeurIPS 2020) with the
decoder gradient from a third, independent sample (the original protocol):

.. math:: \hat g_\theta = \tfrac12\big(f(b) - f(\tilde b)\big)
   (-1)^{\tilde b}\,\mathbb 1[b \ne \tilde b]\,\sigma(|\theta|),
   \quad b = 1[u < \sigma(\theta)],\ \tilde b = 1[1 - u < \sigma(\theta)].
"""

from typing import Tuple

import keras
import numpy as np
import tensorflow as tf

from experiments.models import networks

_EMA_DECAY = 0.999


def _dense_stack(sizes, output_bias=None):
  """Keras Dense layers with the binary model's LeakyReLU between them."""
  layers = []
  for i, width in enumerate(sizes[1:]):
    last = i == len(sizes) - 2
    bias = (keras.initializers.Constant(output_bias)
            if last and output_bias is not None else "zeros")
    layers.append(keras.layers.Dense(width, bias_initializer=bias))
    if not last:
      layers.append(keras.layers.LeakyReLU(negative_slope=networks.LEAKY_RELU_ALPHA))
  model = keras.Sequential(layers)
  model.build((None, sizes[0]))
  return model


def _log_bernoulli(values, logits):
  # TensorFlow's own cross-entropy, as the original code uses, rather than
  # the library's XLA-tuned `bernoulli.FAMILY.log_prob`.
  return -tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(
      labels=values, logits=logits), axis=-1)


class OfficialStyleDisarm:
  """One-layer Bernoulli VAE and its DisARM step in the original style.

  Args:
    encoder_type: "linear" or "nonlinear" (the same widths as
      :func:`experiments.models.networks.network_sizes`).
    train_mean: ``[784]`` mean training image (input centring, output bias).
    latent_dim: Bernoulli units.
  """

  def __init__(self, encoder_type: str, train_mean, latent_dim: int = 200):
    train_mean, output_bias = networks.data_statistics(
        np.asarray(train_mean, np.float32), len(train_mean), True)
    data_dim = len(train_mean)
    self.train_mean = tf.constant(train_mean)
    self.encoder = _dense_stack(
        networks.network_sizes(encoder_type, data_dim, latent_dim))
    self.decoder = _dense_stack(
        networks.network_sizes(encoder_type, latent_dim, data_dim), output_bias)
    self.prior_logits = tf.Variable(tf.zeros([latent_dim]))
    # The binaries' default rates: infnet_lr, genmo_lr, prior_lr.
    self.optimizers = (keras.optimizers.Adam(1e-4), keras.optimizers.Adam(1e-4),
                       keras.optimizers.SGD(1e-2))
    self.grad_mean = [tf.Variable(tf.zeros_like(v))
                      for v in self.encoder.trainable_variables]
    self.grad_square = [tf.Variable(tf.zeros_like(v))
                        for v in self.encoder.trainable_variables]
    self.step = tf.function(self._step)  # No XLA, as the original.

  def _elbo(self, x, samples, encoder_logits):
    """One decoder pass: log p(x|b) + log p(b) - log q(b|x), ``[B]``."""
    return (_log_bernoulli(x, self.decoder(2.0 * samples - 1.0))
            + _log_bernoulli(samples, tf.broadcast_to(self.prior_logits,
                                                      tf.shape(samples)))
            - _log_bernoulli(samples, encoder_logits))

  def _step(self, images, seed) -> Tuple[tf.Tensor, tf.Tensor]:
    """One training step on ``images`` ``[B, 784]`` in [0, 1].

    Returns:
      (mean ELBO of the decoder sample, encoder gradient variance).
    """
    seeds = tf.random.experimental.stateless_split(seed, 4)
    x = tf.cast(tf.random.stateless_uniform(tf.shape(images), seeds[0])
                < images, tf.float32)
    with tf.GradientTape(persistent=True) as tape:
      logits = self.encoder(x - self.train_mean)
      probs = tf.sigmoid(logits)
      third = tf.cast(tf.random.stateless_uniform(tf.shape(logits), seeds[1])
                      < probs, tf.float32)
      elbo = self._elbo(x, tf.stop_gradient(third), tf.stop_gradient(logits))
      model_loss = -tf.reduce_mean(elbo)
      u = tf.random.stateless_uniform(tf.shape(logits), seeds[2])
      b = tf.cast(u < probs, tf.float32)
      b_tilde = tf.cast(1.0 - u < probs, tf.float32)
      f = self._elbo(x, b, logits)
      f_tilde = self._elbo(x, b_tilde, logits)
    weight = (0.5 * (f - f_tilde)[:, tf.newaxis]
              * tf.pow(-1.0, b_tilde) * tf.cast(tf.not_equal(b, b_tilde),
                                               tf.float32)
              * tf.sigmoid(tf.abs(logits)))
    batch = tf.cast(tf.shape(images)[0], tf.float32)
    encoder_vars = self.encoder.trainable_variables
    encoder_grads = tape.gradient(logits, encoder_vars,
                                  output_gradients=-weight / batch)
    decoder_grads = tape.gradient(model_loss,
                                  self.decoder.trainable_variables)
    prior_grads = tape.gradient(model_loss, [self.prior_logits])
    del tape
    for optimizer, grads, variables in zip(
        self.optimizers, (encoder_grads, decoder_grads, prior_grads),
        (encoder_vars, self.decoder.trainable_variables,
         [self.prior_logits])):
      optimizer.apply_gradients(zip(grads, variables))
    variance = 0.0
    for g, mean, square in zip(encoder_grads, self.grad_mean,
                               self.grad_square):
      mean.assign(_EMA_DECAY * mean + (1 - _EMA_DECAY) * g)
      square.assign(_EMA_DECAY * square + (1 - _EMA_DECAY) * tf.square(g))
      variance += tf.reduce_sum(square - tf.square(mean))
    return tf.reduce_mean(elbo), variance
