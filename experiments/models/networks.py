"""Networks and constants shared by the VAE models.

The reference protocol's networks: ``linear`` (one dense layer) or
``nonlinear`` (hidden layers with LeakyReLU), plain ``tf.Variable`` weights
for a lean compiled step; the decoder output bias initialised at the
training mean's logit (``initialize_with_bias``); and the decoder-gradient
choice of the training objectives.
"""

from typing import List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

ENCODER_TYPES = ("linear", "nonlinear")
#: Decoder/prior gradient: pathwise gradient of the estimator's own value
#: (the mean of f over the samples it evaluated), or of a separate forward
#: sample's ELBO (the original launcher).
ESTIMATOR_SAMPLES = "estimator_samples"
SEPARATE_SAMPLE = "separate_sample"
DECODER_GRADS = (ESTIMATOR_SAMPLES, SEPARATE_SAMPLE)
HIDDEN_DIMS = (200, 200)
LEAKY_RELU_ALPHA = 0.3
#: Clipping of the training mean before ``logit`` in initialize_with_bias
#: (keeps the bias within +-6.9).
BIAS_INIT_CLIP = 1e-3


def scale_gradient(x: tf.Tensor, scale: float) -> tf.Tensor:
  """Identity in the forward pass; multiplies the backward gradient by scale.

  ``x - stop_gradient(x)`` is exactly 0, so the forward value is exactly x.
  """
  if scale == 1:
    return x
  return tf.stop_gradient(x) + scale * (x - tf.stop_gradient(x))


def network_sizes(encoder_type: str, input_dim: int, output_dim: int,
                  hidden_dims: Sequence[int] = HIDDEN_DIMS) -> List[int]:
  """Layer widths of a reference network: linear, or with hidden layers."""
  if encoder_type not in ENCODER_TYPES:
    raise ValueError(f"`encoder_type` must be one of {ENCODER_TYPES}, got "
                     f"{encoder_type!r}.")
  hidden = list(hidden_dims) if encoder_type == "nonlinear" else []
  return [input_dim] + hidden + [output_dim]


class MLP(tf.Module):
  """Dense layers with LeakyReLU between them (none after the last).

  Plain ``tf.Variable`` weights and ``tf.matmul``: no Keras layer overhead
  in the compiled step. Inputs may have any number of leading axes (sample
  and batch axes); they are flattened into one matmul per layer.

  Kernels are Glorot-uniform (the Keras ``Dense`` default), biases zero
  except an optional output bias.
  """

  def __init__(self, sizes: Sequence[int], rng: np.random.RandomState,
               alpha: float = LEAKY_RELU_ALPHA,
               output_bias: Optional[np.ndarray] = None, name=None):
    super().__init__(name=name)
    if len(sizes) < 2:
      raise ValueError(f"`sizes` needs input and output widths, got {sizes}.")
    self.sizes = tuple(int(s) for s in sizes)
    self.alpha = alpha
    self.kernels = []
    self.biases = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
      limit = np.sqrt(6.0 / (fan_in + fan_out))
      self.kernels.append(tf.Variable(
          rng.uniform(-limit, limit, (fan_in, fan_out)).astype(np.float32),
          name=f"kernel_{i}"))
      bias = np.zeros([fan_out], np.float32)
      if output_bias is not None and i == len(sizes) - 2:
        bias = np.broadcast_to(output_bias, [fan_out]).astype(np.float32)
      self.biases.append(tf.Variable(bias, name=f"bias_{i}"))

  def __call__(self, inputs: tf.Tensor) -> tf.Tensor:
    leading = inputs.shape[:-1].as_list()
    if None in leading:
      leading = tf.unstack(tf.shape(inputs)[:-1])
    h = tf.reshape(inputs, [-1, self.sizes[0]])
    for i, (kernel, bias) in enumerate(zip(self.kernels, self.biases)):
      h = tf.nn.bias_add(tf.matmul(h, kernel), bias)
      if i < len(self.kernels) - 1:
        h = tf.nn.leaky_relu(h, self.alpha)
    return tf.reshape(h, leading + [self.sizes[-1]])


def data_statistics(train_mean, data_dim: int, initialize_with_bias: bool
                    ) -> Tuple[np.ndarray, Optional[np.ndarray]]:
  """The checked training mean, and the decoder output bias it implies.

  Returns ``(train_mean, output_bias)``: float32 ``[data_dim]``, and
  ``logit(clip(train_mean, BIAS_INIT_CLIP, 1 - BIAS_INIT_CLIP))`` with
  ``initialize_with_bias`` (None without).
  """
  train_mean = np.asarray(train_mean, np.float32)
  if train_mean.shape != (data_dim,):
    raise ValueError(f"`train_mean` must have shape [{data_dim}], got "
                     f"{train_mean.shape}.")
  if not initialize_with_bias:
    return train_mean, None
  mean = np.clip(train_mean, BIAS_INIT_CLIP, 1 - BIAS_INIT_CLIP)
  return train_mean, np.log(mean) - np.log1p(-mean)


def basket_exclusion(estimator) -> Optional[str]:
  """Why ``estimator`` cannot join a gradient basket, or None.

  A basket compares encoder-gradient variances of estimators run on the
  same batches, never applied: a biased estimator's variance says nothing
  comparable, and a learned control variate is trained only when its
  estimator is the run's own (in a basket it would stay at its untrained
  values).
  """
  if not estimator.facts.unbiased:
    return "biased: its variance is not comparable"
  if estimator.facts.trainable_state:
    return "its control variate is trained only when it is the run's estimator"
  return None


def check_decoder_grad(estimator, decoder_grad: str):
  """Rejects a decoder-gradient protocol the estimator cannot train with.

  ``estimator``: a registered estimator object (its facts are read). An
  estimator that differentiates the objective in its samples needs the
  objective's gradient, which the separate-sample protocol stops (its
  objective is a constant for the decoder).
  """
  if decoder_grad not in DECODER_GRADS:
    raise ValueError(f"`decoder_grad` must be one of {DECODER_GRADS}, got "
                     f"{decoder_grad!r}.")
  if (estimator.facts.needs_objective_gradient
      and decoder_grad == SEPARATE_SAMPLE):
    raise ValueError(
        f"Estimator '{estimator.name}' differentiates the objective in its "
        f"samples, which decoder_grad='{SEPARATE_SAMPLE}' stops (the "
        f"decoder gets its gradient from a separate sample there); use "
        f"decoder_grad='{ESTIMATOR_SAMPLES}'.")
