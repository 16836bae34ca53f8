r"""Bernoulli VAEs with one to four stochastic layers (DisARM paper protocol).

The generative model and the amortized posterior over stochastic layers
:math:`b_1, \dots, b_L` (each ``latent_dim`` Bernoulli units) are

.. math::
   p(x, b) = p(x \mid b_1) \prod_{l=1}^{L-1} p(b_l \mid b_{l+1})\, p(b_L),
   \qquad
   q(b \mid x) = q(b_1 \mid x) \prod_{l=2}^{L} q(b_l \mid b_{l-1}),

every conditional a factorized Bernoulli whose logits come from a network,
and :math:`p(b_L)` a factorized Bernoulli with trainable logits (init 0).
The one-sample ELBO is

.. math:: f(b) = \log p(x \mid b_1) + \sum_{l<L} \log p(b_l \mid b_{l+1})
   + \log p(b_L) - \sum_l \log q(b_l \mid b_{l-1}),

written as a sum of per-layer terms
:math:`t_l = \log p(b_{l-1} \mid b_l) - \log q(b_l \mid b_{l-1})`
(:math:`b_0 = x`; the top term also holds :math:`\log p(b_L)`).

Training (:meth:`BernoulliVAE.training_objective`) estimates the encoder
gradient one stochastic layer at a time : layer l's estimator
(:func:`tf_discrete.bernoulli.estimate`) draws its own samples of
:math:`b_l` given the forward-pass sample of :math:`b_{l-1}`; for each of
them the layers below are re-sampled from q, and the objective is the full
ELBO. Decoder and prior weights get the pathwise gradient either of the
estimates themselves (``decoder_grad="estimator_samples"``) or of the ELBO
of the forward sample (``"separate_sample"``, the original protocol).

The model follows the protocol the training loop of
:mod:`experiments.training` expects (``parameter_groups``,
``variance_group``, ``training_objective``, ``log_likelihood_bound``).
"""

import dataclasses
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from experiments.models import estimator_state
from experiments.models.networks import (ESTIMATOR_SAMPLES,
                                         MLP, SEPARATE_SAMPLE,
                                         basket_exclusion,
                                         check_decoder_grad,
                                         data_statistics, network_sizes,
                                         scale_gradient)
from tf_discrete import _core
from tf_discrete import bernoulli
from tf_discrete.facts import Estimates

MAX_LAYERS = 4

_log_prob = bernoulli.FAMILY.log_prob


def estimates_bound(estimator: str) -> bool:
  """Whether ``estimator`` estimates a K-sample bound rather than E_q[f]
  (its declared facts): the gradient of such a bound has a direct path
  through ``f``, so the model keeps the pathwise gradient of -log q."""
  return bernoulli.get(estimator).facts.estimates is Estimates.BOUND


@dataclasses.dataclass(frozen=True)
class BernoulliVAEConfig:
  """What defines a Bernoulli VAE and its gradient estimator.

  Attributes:
    estimator: a name from ``tf_discrete.bernoulli.available()``.
    num_samples: objective evaluations per estimate and stochastic layer
      (``None``: the estimator's default; see ``bernoulli.estimate``).
    encoder_type: "linear" or "nonlinear" for the data-facing encoder and
      decoder; links between stochastic layers are linear.
    num_layers: stochastic layers, 1 to 4.
    latent_dim: Bernoulli units per stochastic layer.
    data_dim: pixels.
    demean_input: subtract the training mean at the encoder input and feed
      2b - 1 to the data decoder (centring at the data-facing layers only).
    initialize_with_bias: data decoder output bias = logit(training mean).
    shared_randomness: downstream re-sampling of every branch uses the same
      per-layer uniforms (common random numbers); needs num_layers > 1.
    decoder_grad: ESTIMATOR_SAMPLES or SEPARATE_SAMPLE.
    estimator_options: options of ``estimator`` (its declared
      ``facts.options``); unset ones take the estimator's defaults.
    temperature_decay, min_temperature: anneal the estimator's
      ``temperature`` option (see :mod:`experiments.models.estimator_state`);
      None: constant.
  """
  estimator: str = "disarm"
  num_samples: Optional[int] = None
  encoder_type: str = "linear"
  num_layers: int = 1
  latent_dim: int = 200
  data_dim: int = 784
  demean_input: bool = False
  initialize_with_bias: bool = False
  shared_randomness: bool = False
  decoder_grad: str = ESTIMATOR_SAMPLES
  estimator_options: Mapping[str, Any] = dataclasses.field(
      default_factory=dict)
  temperature_decay: Optional[float] = None
  min_temperature: Optional[float] = None

  def __post_init__(self):
    est = bernoulli.get(self.estimator)  # Lists the names when unknown.
    # Validates the count (which may depend on an option).
    est.evaluations(self.num_samples, [self.latent_dim],
                    **self.estimator_options)
    est.resolve_options(self.estimator_options)  # Validates the options.
    network_sizes(self.encoder_type, 1, 1)
    if not 1 <= self.num_layers <= MAX_LAYERS:
      raise ValueError(f"`num_layers` must be in 1..{MAX_LAYERS}, got "
                       f"{self.num_layers}.")
    estimator_state.temperature_schedule(
        bernoulli, self.estimator, self.estimator_options,
        self.temperature_decay, self.min_temperature)  # Validates.
    check_decoder_grad(est, self.decoder_grad)
    if est.facts.needs_objective_gradient and self.num_layers > 1:
      raise ValueError(
          f"Estimator '{self.estimator}' differentiates the objective in its "
          f"samples; with num_layers={self.num_layers} the layers below are "
          f"re-sampled by thresholding, which has no such gradient. Use "
          f"num_layers=1.")
    if self.shared_randomness and self.num_layers == 1:
      raise ValueError(
          "`shared_randomness` couples the re-sampling of the layers below "
          "an estimated layer; with num_layers=1 there are none. Drop the "
          "flag or use num_layers > 1.")
    if estimates_bound(self.estimator):
      if self.num_layers > 1:
        raise ValueError(
            f"Estimator '{self.estimator}' optimizes a multi-sample bound and "
            f"is implemented for num_layers=1 only (as in the original "
            f"launcher); got num_layers={self.num_layers}.")
      if self.decoder_grad != ESTIMATOR_SAMPLES:
        raise ValueError(
            f"Estimator '{self.estimator}' trains the decoder on the "
            f"multi-sample bound it estimates (the original protocol); "
            f"decoder_grad='{self.decoder_grad}' applies to single-sample-"
            f"bound estimators only.")

  @property
  def evaluations(self) -> int:
    """Objective evaluations of one layer's estimate."""
    return bernoulli.get(self.estimator).evaluations(
        self.num_samples, [self.latent_dim], **self.estimator_options)


class BernoulliVAE(estimator_state.EstimatorStateMixin, tf.Module):
  """Multi-layer Bernoulli VAE; see the module docstring for the model.

  Args:
    config: a :class:`BernoulliVAEConfig`.
    train_mean: ``[data_dim]`` mean training image (centring, output bias).
    seed: int seed of the weight initialization.
  """

  #: Parameter group whose gradient variance the training loop tracks.
  variance_group = "encoder"

  def __init__(self, config: BernoulliVAEConfig, train_mean, seed: int = 0,
               name=None):
    super().__init__(name=name)
    self.config = config
    train_mean, output_bias = data_statistics(
        train_mean, config.data_dim, config.initialize_with_bias)
    rng = np.random.RandomState(seed)
    dims = [config.data_dim] + [config.latent_dim] * config.num_layers
    # encoders[l]: layer l-1 (x for l = 0) -> logits of layer l.
    # decoders[l]: layer l -> logits of layer l-1 (of x for l = 0).
    self.encoders, self.decoders = [], []
    for l in range(config.num_layers):
      kind = config.encoder_type if l == 0 else "linear"
      self.encoders.append(MLP(network_sizes(kind, dims[l], dims[l + 1]),
                               rng, name=f"encoder_{l}"))
      self.decoders.append(MLP(network_sizes(kind, dims[l + 1], dims[l]),
                               rng, output_bias=output_bias if l == 0 else None,
                               name=f"decoder_{l}"))
    self.prior_logits = tf.Variable(tf.zeros([config.latent_dim]),
                                    name="prior_logits")
    self.train_mean = tf.Variable(train_mean, trainable=False,
                                  name="train_mean")
    self.estimator_state = estimator_state.EstimatorState(
        bernoulli, config.estimator, config.estimator_options,
        [config.latent_dim], config.num_layers, config.temperature_decay,
        config.min_temperature)

  @property
  def objective_name(self) -> str:
    """What ``training_objective``'s estimate estimates (progress lines)."""
    if estimates_bound(self.config.estimator):
      return "multi-sample bound"
    return "ELBO"

  def parameter_groups(self) -> Dict[str, List[tf.Variable]]:
    """Variables per optimizer: encoder, decoder, prior, and
    control_variate for an estimator with trainable state."""
    groups = {
        "encoder": [v for m in self.encoders for v in m.trainable_variables],
        "decoder": [v for m in self.decoders for v in m.trainable_variables],
        "prior": [self.prior_logits],
    }
    control = self.estimator_state.control_variate_variables
    if control:
      groups[estimator_state.CONTROL_VARIATE_GROUP] = control
    return groups

  # ------------------------------------------------------------------------
  # Networks and per-layer terms.
  # ------------------------------------------------------------------------

  def encoder_logits(self, layer: int, below: tf.Tensor) -> tf.Tensor:
    """Logits of q(b_layer | below); below is x for layer 0."""
    if layer == 0 and self.config.demean_input:
      below = below - self.train_mean
    return self.encoders[layer](below)

  def decoder_logits(self, layer: int, samples: tf.Tensor) -> tf.Tensor:
    """Logits of p(layer below | b_layer); of x for layer 0."""
    if layer == 0 and self.config.demean_input:
      samples = 2.0 * samples - 1.0
    return self.decoders[layer](samples)

  def layer_term(self, layer, below, samples, logits, pathwise_log_q):
    r""":math:`t_l = \log p(b_{l-1} | b_l) - \log q(b_l | b_{l-1})` (+ prior).

    Args:
      layer: l (0-based).
      below: :math:`b_{l-1}` (x for l = 0); broadcasts against ``samples``.
      samples: :math:`b_l`, ``[*S, B, D]``.
      logits: logits of :math:`q(b_l | b_{l-1})`, broadcasting likewise.
      pathwise_log_q: differentiate ``-log q`` w.r.t. ``logits``. Off for
        single-sample bounds (its score has zero mean, it only adds
        variance); on for multi-sample bounds (part of their gradient).
    """
    if not pathwise_log_q:
      logits = tf.stop_gradient(logits)
    term = (_log_prob(below, self.decoder_logits(layer, samples))
            - _log_prob(samples, logits))
    if layer == self.config.num_layers - 1:
      term += _log_prob(samples, self.prior_logits)
    return term

  def sample_chain(self, first_layer, below, uniforms):
    """Samples layers first_layer.. from q given the layer above them.

    ``b_l = 1[u_l < sigmoid(logits_l)]`` with ``uniforms[i]`` the noise of
    layer ``first_layer + i``; noise of shape ``[*S, B, D]`` broadcasts
    ``below`` over sample axes.

    Returns:
      (samples, logits): lists, one entry per sampled layer.
    """
    samples, logits = [], []
    for layer, u in zip(range(first_layer, self.config.num_layers), uniforms):
      logits.append(self.encoder_logits(layer, below))
      below = tf.cast(u < tf.sigmoid(logits[-1]), u.dtype)
      samples.append(below)
    return samples, logits

  def elbo_terms(self, first_layer, below, samples, logits, pathwise_log_q):
    """Sum of the layer terms from ``first_layer`` down (all: the ELBO)."""
    total = 0.0
    for i, (b, lg) in enumerate(zip(samples, logits)):
      total += self.layer_term(first_layer + i, below, b, lg, pathwise_log_q)
      below = b
    return total

  def _uniforms(self, shape, seeds):
    """One float32 noise tensor of ``shape`` per seed (one per layer)."""
    return [_core.uniform(shape, s, tf.float32) for s in seeds]

  # ------------------------------------------------------------------------
  # Evaluation and training.
  # ------------------------------------------------------------------------

  def log_likelihood_bound(self, x: tf.Tensor, num_samples: int,
                           seed) -> tf.Tensor:
    r"""K-sample importance-weighted bound :math:`\log \frac1K \sum_k
    e^{f(b_k)}`, ``b_k ~ q(b|x)`` (K = 1: the ELBO); ``[B]``.

    One batched pass: the first encoder runs once per image, everything
    else on ``[K, B, ...]``.
    """
    shape = [num_samples, x.shape[0], self.config.latent_dim]
    uniforms = self._uniforms(
        shape, _core.split_seed(seed, self.config.num_layers))
    samples, logits = self.sample_chain(0, x, uniforms)
    f = self.elbo_terms(0, x, samples, logits, pathwise_log_q=False)
    return _core.log_mean_exp(f, axis=0)

  def training_objective(self, x: tf.Tensor, seed, estimator=None,
                         num_samples=None) -> Tuple[tf.Tensor, tf.Tensor]:
    r"""Surrogate whose gradient is the training update; and its estimate.

    Layer l's estimator (``bernoulli.estimate``) gets logits
    :math:`q(b_l | b_{l-1})` at the forward-pass sample of the layers above
    and the objective

    .. math:: f_l(b_l) = \sum_{j<l} t_j(\text{forward sample}) +
       \sum_{j \ge l} t_j(b_l, b_{l+1}, \dots),
       \quad b_{j>l} \sim q(\cdot | b_{j-1})

    (fresh noise per branch, or the forward pass's per-layer uniforms with
    ``shared_randomness``), i.e. the full ELBO, with the terms of the layers
    above computed once rather than per branch. Cost: the forward chain plus
    the data decoder once (for L > 1 or ``separate_sample``) and two suffix
    evaluations per layer with DisARM; L = 1 with ``estimator_samples``
    evaluates the decoder on the estimator's pair only.

    Args:
      x: binarized images ``[B, data_dim]``.
      seed: stateless seed ``int32[2]``; the only source of randomness.
      estimator, num_samples: override the config (gradient basket, bias
        check); same validity rules.

    Returns:
      ``(surrogate, estimate)``, batch means. ``grad(surrogate)`` is the
      ascent direction: the estimator gradient for the encoder; for decoder
      and prior the pathwise gradient of the mean of the layers' estimates
      (``estimator_samples``) or of the forward sample's ELBO
      (``separate_sample``). ``estimate`` is layer 1's estimate of the
      objective (the ELBO, or the multi-sample bound).
    """
    cfg = self.config
    if estimator is not None or num_samples is not None:
      other = estimator is not None and estimator != cfg.estimator
      # Another estimator (gradient basket, bias check) runs with its own
      # default options.
      cfg = dataclasses.replace(
          cfg, estimator=estimator or cfg.estimator,
          num_samples=cfg.num_samples if num_samples is None else num_samples,
          estimator_options={} if other else cfg.estimator_options)
    separate = cfg.decoder_grad == SEPARATE_SAMPLE
    forward_seed, *layer_seeds = _core.split_seed(
        _core.resolve_seed(seed), cfg.num_layers + 1)
    forward = self._forward_pass(cfg, x, forward_seed)
    values = [self._layer_estimate(cfg, forward, l, layer_seeds[l])
              for l in range(cfg.num_layers)]
    if separate:
      # The estimates carry only the encoder gradient.
      surrogate = sum(forward.terms) + sum(values)
    else:
      surrogate = sum(values) / cfg.num_layers
    return tf.reduce_mean(surrogate), tf.reduce_mean(values[0])

  def _forward_pass(self, cfg, x, seed) -> "_ForwardPass":
    """One sample of every layer from q: the upstream samples of every
    layer's estimate, and the shared noise of ``shared_randomness``."""
    seeds = _core.split_seed(seed, cfg.num_layers)
    uniforms = self._uniforms([x.shape[0], cfg.latent_dim], seeds)
    samples, logits = self.sample_chain(0, x, uniforms)
    inputs = [x] + samples[:-1]
    terms = None
    # The terms are needed as the constant upper part of the deeper layers'
    # ELBOs, and for the separate-sample decoder gradient.
    if cfg.num_layers > 1 or cfg.decoder_grad == SEPARATE_SAMPLE:
      pathwise = estimates_bound(cfg.estimator)
      terms = [self.layer_term(l, inputs[l], samples[l], logits[l], pathwise)
               for l in range(cfg.num_layers)]
    return _ForwardPass(inputs, samples, logits, seeds, uniforms, terms)

  def _layer_estimate(self, cfg, forward, layer, seed) -> tf.Tensor:
    """Layer ``layer``'s estimate of the objective, ``[B]``.

    Its gradient w.r.t. the layer's logits is the estimator's; with
    ``estimator_samples`` it is scaled by L, because the surrogate averages
    the L estimates (each an unbiased ELBO estimate for the decoder).
    """
    pathwise = estimates_bound(cfg.estimator)
    separate = cfg.decoder_grad == SEPARATE_SAMPLE
    estimator_seed, resample_seed = _core.split_seed(seed, 2)
    if cfg.shared_randomness:
      # As in the original code: the layer's own draw is built on the same
      # uniform as its forward sample (for a DisARM/ARM pair, the forward
      # sample is the pair's second member), so every branch of every layer
      # shares one noise per layer.
      estimator_seed = forward.seeds[layer]
    upper = sum(forward.terms[:layer]) if layer else 0.0
    logits = forward.logits[layer]

    def objective(branch):
      """Full ELBO of each branch sample of this layer: ``[S, B]``."""
      if cfg.shared_randomness:
        noise = forward.uniforms[layer + 1:]
      else:
        noise = self._uniforms(branch.shape, _core.split_seed(
            resample_seed, cfg.num_layers - layer - 1))
      deeper, deeper_logits = self.sample_chain(layer + 1, branch, noise)
      f = upper + self.elbo_terms(layer, forward.inputs[layer],
                                  [branch] + deeper, [logits] + deeper_logits,
                                  pathwise)
      return tf.stop_gradient(f) if separate else f

    scale = 1 if separate else cfg.num_layers
    options = dict(cfg.estimator_options)
    if cfg.estimator == self.config.estimator:
      options.update(self.estimator_state.options(layer))
    return bernoulli.estimate(objective, scale_gradient(logits, scale),
                              cfg.estimator, num_samples=cfg.num_samples,
                              seed=estimator_seed, **options)


@dataclasses.dataclass(frozen=True)
class _ForwardPass:
  """A sample of every layer from q and what the layer estimates reuse.

  Attributes:
    inputs: the conditioning value of each layer: x, b_1, ..., b_{L-1}.
    samples, logits: b_l and the logits of q(b_l | inputs[l]), ``[B, D]``.
    seeds: the stateless seed of each layer's noise.
    uniforms: the noise that drew ``samples``.
    terms: the layer terms t_l at this sample, or None when not needed.
  """
  inputs: List[tf.Tensor]
  samples: List[tf.Tensor]
  logits: List[tf.Tensor]
  seeds: List[tf.Tensor]
  uniforms: List[tf.Tensor]
  terms: Optional[List[tf.Tensor]]


def gradient_basket(config: BernoulliVAEConfig) -> Tuple[List[str], Dict[str, str]]:
  """Estimators comparable with ``config.estimator`` at the same cost.

  Unbiased, same kind of bound (single- or multi-sample), same number of
  objective evaluations per layer, same model. Returns ``(names, excluded)`` with the
  reason each other estimator is excluded.
  """
  names, excluded = [], {}
  evaluations = config.evaluations
  for name in bernoulli.available():
    if name == config.estimator:
      continue
    reason = basket_exclusion(bernoulli.get(name))
    if reason:
      excluded[name] = reason
      continue
    try:
      dataclasses.replace(config, estimator=name, num_samples=evaluations,
                          estimator_options={})
    except ValueError as e:
      excluded[name] = str(e)
      continue
    if estimates_bound(name) != estimates_bound(config.estimator):
      excluded[name] = "estimates a different bound"
      continue
    names.append(name)
  return names, excluded
