r"""Categorical VAE (coupled-estimators paper protocol).

One stochastic layer of V independent categorical variables with C
categories each, :math:`z = (z_1, \dots, z_V)`:

.. math::
   q_\phi(z \mid x) = \prod_v \mathrm{Cat}(z_v;\, \mathrm{softmax}\,
   \theta_v(x)), \qquad
   p(x, z) = p_\psi(x \mid z) \prod_v \mathrm{Cat}(z_v;\,
   \mathrm{softmax}\,\lambda_v),

with encoder logits :math:`\theta(x)` of shape ``[B, V, C]``, a factorized
Bernoulli decoder :math:`p_\psi(x \mid z)` over the pixels, and prior logits
:math:`\lambda` (``[V, C]``, a trainable variable initialized to 0, i.e. the
uniform prior at the start; the original launcher trains it with SGD at
``prior_lr``). The one-sample ELBO is

.. math:: f(z) = \log p_\psi(x \mid z) + \log p(z) - \log q_\phi(z \mid x),

every term in log-sigmoid / log-softmax form (finite for any logits).

Networks (the reference protocol): ``nonlinear`` encoder 784-512-256-V·C with
LeakyReLU(0.2), decoder mirrored (input-256-512-784); ``linear``: one dense
layer each way. The decoder input is the sample as

* ``one_hot=True``: the flattened one-hot vectors, ``V·C`` inputs;
* ``one_hot=False`` (the original launcher's default): the category
  *indices* :math:`z_v \in \{0, \dots, C-1\}` as V real inputs (an ordinal
  encoding: the decoder sees category 3 as "between" 2 and 4).

``demean_input`` subtracts the training mean from x at the encoder input
and feeds :math:`2s - 1` to the decoder (s: the one-hot vector or the index
vector), as the original launcher and the Bernoulli VAE do.

Training (:meth:`CategoricalVAE.training_objective`): the encoder gradient
is :func:`tf_discrete.categorical.estimate` of :math:`\mathbb{E}_q[f]` with
the gradient stopped through :math:`\theta` inside :math:`\log q` (that
pathwise term has zero mean and only adds variance); decoder and prior get
the pathwise gradient either of the estimate itself (the mean of f over
the estimator's S evaluations, each marginally a sample of q;
``decoder_grad="estimator_samples"``) or of the ELBO of one separate sample
(``"separate_sample"``, the original protocol: the same one-sample decoder
gradient whatever the estimator's cost).

The model follows the protocol of :class:`experiments.training.Trainer`
(``parameter_groups``, ``variance_group``, ``training_objective``,
``log_likelihood_bound``), like :class:`experiments.models.bernoulli.BernoulliVAE`, and
reuses its :class:`~experiments.models.networks.MLP`.
"""

import dataclasses
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np
import tensorflow as tf

from experiments.models import estimator_state
from experiments.models import networks
from experiments.models.networks import (SEPARATE_SAMPLE,
                                         check_decoder_grad)
from tf_discrete import _core
from tf_discrete import bernoulli
from tf_discrete import categorical
from tf_discrete.categorical import _common
from tf_discrete.facts import Estimates

#: Hidden widths of the nonlinear encoder; the decoder uses them reversed.
ENCODER_HIDDEN = (512, 256)
LEAKY_RELU_ALPHA = 0.2
_bernoulli_log_prob = bernoulli.FAMILY.log_prob
_categorical_log_prob = categorical.FAMILY.log_prob


def _check_mean_estimator(name: str):
  """This VAE trains the one-sample ELBO: estimators of E_q[f] only (their
  declared facts say which)."""
  if categorical.get(name).facts.estimates is not Estimates.MEAN:
    raise ValueError(f"Estimator '{name}' estimates a multi-sample bound; "
                     f"CategoricalVAE trains the single-sample ELBO only.")


@dataclasses.dataclass(frozen=True)
class CategoricalVAEConfig:
  """What defines a categorical VAE and its gradient estimator.

  Attributes:
    estimator: a name from ``tf_discrete.categorical.available()``.
    num_samples: objective evaluations per estimate where the estimator
      allows a choice (K for ``reinforce``/``rloo``/``ar``; 2 x pairs for
      ``disarm_*``); None: the estimator's default (``rloo``: C). Must be
      None for the fixed-cost estimators (``ars``, ``ars_plus``: C;
      ``arsm``, ``arsm_plus``: C(C-1)/2 + 1).
    estimator_options: options of ``estimator`` (its declared
      ``facts.options``, e.g. ``logits_order`` of ``disarm_sb``); unset
      ones take the estimator's defaults.
    encoder_type: "linear" or "nonlinear".
    num_variables: V.
    num_categories: C (>= 2).
    data_dim: pixels.
    one_hot: decoder input one-hot (V·C inputs) instead of indices (V).
    demean_input: centre the encoder input (x - training mean) and the
      decoder input (2s - 1).
    initialize_with_bias: decoder output bias = logit(training mean).
    decoder_grad: ESTIMATOR_SAMPLES or SEPARATE_SAMPLE.
    temperature_decay, min_temperature: anneal the estimator's
      ``temperature`` option (see :mod:`experiments.models.estimator_state`);
      None: constant.
  """
  estimator: str = "rloo"
  num_samples: Optional[int] = None
  estimator_options: Mapping[str, Any] = dataclasses.field(
      default_factory=dict)
  encoder_type: str = "nonlinear"
  num_variables: int = 20
  num_categories: int = 10
  data_dim: int = 784
  one_hot: bool = False
  demean_input: bool = False
  initialize_with_bias: bool = False
  decoder_grad: str = SEPARATE_SAMPLE
  temperature_decay: Optional[float] = None
  min_temperature: Optional[float] = None

  def __post_init__(self):
    for name in ("num_variables", "num_categories", "data_dim"):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be a positive int, got {value!r}.")
    if self.num_categories < 2:
      raise ValueError(f"`num_categories` must be at least 2, got "
                       f"{self.num_categories}.")
    est = categorical.get(self.estimator)  # Lists the names when unknown.
    _check_mean_estimator(self.estimator)
    if self.num_samples is not None and est.facts.cost.fixed:
      raise ValueError(
          f"`num_samples` does not apply to '{self.estimator}': its cost is "
          f"fixed at {self.evaluations} objective evaluations for C = "
          f"{self.num_categories}. Leave it unset.")
    self.evaluations  # pylint: disable=pointless-statement  # Validates.
    est.resolve_options(self.estimator_options)  # Validates the options.
    if est.facts.needs_objective_gradient and not self.one_hot:
      raise ValueError(
          f"Estimator '{self.estimator}' differentiates the objective in its "
          f"samples; the index decoder input (one_hot=False) is not "
          f"differentiable in them. Use one_hot=True.")
    check_decoder_grad(est, self.decoder_grad)
    networks.network_sizes(self.encoder_type, 1, 1)
    estimator_state.temperature_schedule(
        categorical, self.estimator, self.estimator_options,
        self.temperature_decay, self.min_temperature)  # Validates.

  @property
  def event_shape(self) -> List[int]:
    return [self.num_variables, self.num_categories]

  @property
  def evaluations(self) -> int:
    """Objective evaluations per estimate (one batched decoder pass)."""
    return categorical.get(self.estimator).evaluations(
        self.num_samples, self.event_shape, **self.estimator_options)

  @property
  def decoder_input_dim(self) -> int:
    return self.num_variables * (self.num_categories if self.one_hot else 1)

  def options_of(self, estimator: Optional[str] = None) -> Dict:
    """Options passed to ``categorical.estimate`` for ``estimator``: the
    configured ones for the configured estimator; another one (gradient
    basket, bias-check reference) runs with its defaults."""
    if estimator is None or estimator == self.estimator:
      return dict(self.estimator_options)
    return {}


def resolve_override(config: CategoricalVAEConfig, estimator=None,
                     num_samples=None) -> Tuple[str, Optional[int], Dict]:
  """Estimator, num_samples and options of one estimate.

  ``estimator``/``num_samples`` override the configuration's (the training
  loop's gradient basket and bias check); the same validity rules apply.
  """
  name = config.estimator if estimator is None else estimator
  if estimator is None or estimator == config.estimator:
    count = config.num_samples if num_samples is None else num_samples
  else:
    count = num_samples
  est = categorical.get(name)
  _check_mean_estimator(name)
  if est.facts.cost.fixed:
    count = None  # Its own fixed cost; an equal request is the same.
    if num_samples is not None:
      est.evaluations(num_samples, config.event_shape,  # Must agree.
                      **config.options_of(name))
  est.evaluations(count, config.event_shape, **config.options_of(name))
  return name, count, config.options_of(name)


class CategoricalVAE(estimator_state.EstimatorStateMixin, tf.Module):
  """One-layer categorical VAE; see the module docstring for the model.

  Args:
    config: a :class:`CategoricalVAEConfig`.
    train_mean: ``[data_dim]`` mean training image (centring, output bias).
    seed: int seed of the weight initialization.
  """

  #: Parameter group whose gradient variance the training loop tracks.
  variance_group = "encoder"
  #: What ``training_objective``'s estimate estimates (progress lines).
  objective_name = "ELBO"

  def __init__(self, config: CategoricalVAEConfig, train_mean, seed: int = 0,
               name=None):
    super().__init__(name=name)
    self.config = config
    train_mean, output_bias = networks.data_statistics(
        train_mean, config.data_dim, config.initialize_with_bias)
    rng = np.random.RandomState(seed)
    v, c = config.event_shape
    self.encoder = networks.MLP(
        networks.network_sizes(config.encoder_type, config.data_dim, v * c,
                          ENCODER_HIDDEN),
        rng, alpha=LEAKY_RELU_ALPHA, name="encoder")
    self.decoder = networks.MLP(
        networks.network_sizes(config.encoder_type, config.decoder_input_dim,
                          config.data_dim, ENCODER_HIDDEN[::-1]),
        rng, alpha=LEAKY_RELU_ALPHA, output_bias=output_bias, name="decoder")
    self.prior_logits = tf.Variable(tf.zeros([v, c]), name="prior_logits")
    self.train_mean = tf.Variable(train_mean, trainable=False,
                                  name="train_mean")
    self.estimator_state = estimator_state.EstimatorState(
        categorical, config.estimator, config.estimator_options,
        config.event_shape, 1, config.temperature_decay,
        config.min_temperature)

  def parameter_groups(self) -> Dict[str, List[tf.Variable]]:
    """Variables per optimizer: encoder, decoder, prior, and
    control_variate for an estimator with trainable state."""
    groups = {
        "encoder": list(self.encoder.trainable_variables),
        "decoder": list(self.decoder.trainable_variables),
        "prior": [self.prior_logits],
    }
    control = self.estimator_state.control_variate_variables
    if control:
      groups[estimator_state.CONTROL_VARIATE_GROUP] = control
    return groups

  # ------------------------------------------------------------------------
  # Networks and the ELBO.
  # ------------------------------------------------------------------------

  def encoder_logits(self, x: tf.Tensor) -> tf.Tensor:
    """Logits of q(z|x), ``[B, V, C]``."""
    if self.config.demean_input:
      x = x - self.train_mean
    return tf.reshape(self.encoder(x), [-1] + self.config.event_shape)

  def decoder_input(self, samples: tf.Tensor) -> tf.Tensor:
    """One-hot samples ``[*S, V, C]`` -> decoder input (module docstring)."""
    v, c = self.config.event_shape
    if self.config.one_hot:
      leading = samples.shape[:-2].as_list()
      if None in leading:
        leading = tf.unstack(tf.shape(samples)[:-2])
      inputs = tf.reshape(samples, leading + [v * c])
    else:
      inputs = tf.reduce_sum(samples * tf.range(c, dtype=samples.dtype), -1)
    if self.config.demean_input:
      inputs = 2.0 * inputs - 1.0
    return inputs

  def decoder_logits(self, samples: tf.Tensor) -> tf.Tensor:
    """Bernoulli logits of p(x|z), ``[*S, data_dim]``."""
    return self.decoder(self.decoder_input(samples))

  def elbo(self, x: tf.Tensor, samples: tf.Tensor,
           logits: tf.Tensor) -> tf.Tensor:
    r"""One-sample ELBO :math:`f(z)` per sample, ``[S, B]``.

    Args:
      x: binary images ``[B, data_dim]``.
      samples: one-hot ``[S, B, V, C]``.
      logits: encoder logits ``[B, V, C]``. Pass them through
        ``tf.stop_gradient`` to drop the pathwise gradient of ``-log q``.
    """
    return (_bernoulli_log_prob(x, self.decoder_logits(samples))
            + _categorical_log_prob(samples, self.prior_logits)
            - _categorical_log_prob(samples, logits))

  # ------------------------------------------------------------------------
  # Evaluation and training.
  # ------------------------------------------------------------------------

  def posterior_samples(self, logits: tf.Tensor, num_samples: int,
                        seed) -> tf.Tensor:
    """One-hot ``[K, B, V, C]`` samples of q(z|x) for the bounds (no
    gradient), by inverse CDF: one uniform per variable, where sampling by
    the exponential race took half the time of the 100-sample bound."""
    index = _common.inverse_cdf_index(
        tf.stop_gradient(logits), num_samples, _core.resolve_seed(seed))
    return _common.one_hot(index, self.config.num_categories, logits.dtype)

  def log_likelihood_bound(self, x: tf.Tensor, num_samples: int,
                           seed) -> tf.Tensor:
    r"""K-sample importance-weighted bound :math:`\log \frac1K \sum_k
    e^{f(z_k)}`, ``z_k ~ q(z|x)`` (K = 1: the ELBO); ``[B]``.

    The encoder runs once per image; the decoder once on ``[K, B, ...]``.
    Samples come from :meth:`posterior_samples`.
    """
    logits = self.encoder_logits(x)
    samples = self.posterior_samples(logits, num_samples, seed)
    return _core.log_mean_exp(self.elbo(x, samples, logits), axis=0)

  def training_objective(self, x: tf.Tensor, seed, estimator=None,
                         num_samples=None) -> Tuple[tf.Tensor, tf.Tensor]:
    r"""Surrogate whose gradient is the training update; and its estimate.

    Args:
      x: binarized images ``[B, data_dim]``.
      seed: stateless seed ``int32[2]``; the only source of randomness.
      estimator, num_samples: override the configuration (gradient basket,
        bias check). Another estimator runs with its default options; a
        fixed-cost one at its own cost.

    Returns:
      ``(surrogate, estimate)``, batch means. ``grad(surrogate)`` is the
      ascent direction: the estimator's gradient for the encoder; for
      decoder and prior the pathwise gradient of the estimate
      (``estimator_samples``) or of one separate sample's ELBO
      (``separate_sample``). ``estimate`` is the estimator's ELBO estimate
      (the mean of f over its evaluations).
    """
    cfg = self.config
    name, count, options = resolve_override(cfg, estimator, num_samples)
    separate = cfg.decoder_grad == SEPARATE_SAMPLE
    estimator_seed, forward_seed = _core.split_seed(
        _core.resolve_seed(seed), 2)
    logits = self.encoder_logits(x)
    fixed_logits = tf.stop_gradient(logits)

    def objective(samples):
      f = self.elbo(x, samples, fixed_logits)
      # separate_sample: the estimate carries the estimator gradient only.
      return tf.stop_gradient(f) if separate else f

    if name == cfg.estimator:
      options.update(self.estimator_state.options())
    value = categorical.estimate(objective, logits, name, num_samples=count,
                                 seed=estimator_seed, **options)
    surrogate = value
    if separate:
      forward = categorical.sample(fixed_logits, forward_seed, num_samples=1)
      surrogate += self.elbo(x, forward, fixed_logits)[0]
    return tf.reduce_mean(surrogate), tf.reduce_mean(value)


def gradient_basket(config: CategoricalVAEConfig,
                    names=None) -> Tuple[List[Tuple[str, Optional[int]]],
                                         Dict[str, str]]:
  """Estimators whose gradient variance is tracked beside the model's.

  Args:
    config: the model configuration.
    names: estimator names, each optionally ``"name:K"`` with K objective
      evaluations. A bare name runs with the configuration's evaluation
      count if the estimator allows a choice, at its own cost if it is a
      fixed-cost one. None: every other estimator that can run at exactly
      the configuration's cost (``same_cost``).

  Returns:
    ``(basket, excluded)``: ``(name, num_samples)`` pairs for
    :class:`experiments.training.TrainConfig` (num_samples None for
    fixed-cost estimators) and, for ``names=None``, why each other estimator
    was left out.

  Raises:
    ValueError: an unknown name, a count invalid for its estimator, the
      configured estimator itself, or a name given twice.
  """
  evaluations = config.evaluations
  basket, excluded, seen = [], {}, set()
  if names is None:
    for name in categorical.available():
      if name == config.estimator:
        continue
      reason = networks.basket_exclusion(categorical.get(name))
      if reason:
        excluded[name] = reason
        continue
      try:
        _, count, _ = resolve_override(config, name, evaluations)
      except ValueError as e:
        excluded[name] = str(e)
        continue
      basket.append((name, count))
    return basket, excluded
  for entry in names:
    name, _, count = str(entry).partition(":")
    if count:
      try:
        count = int(count)
      except ValueError:
        raise ValueError(f"Basket entry {entry!r}: expected 'name' or "
                         f"'name:K' with an integer K.") from None
    else:
      count = None
    categorical.get(name)
    if name == config.estimator:
      raise ValueError(f"Basket entry {entry!r}: '{name}' is the run's own "
                       f"estimator, tracked anyway as grad_variance.")
    if name in seen:
      raise ValueError(f"Basket entry {entry!r}: '{name}' given twice.")
    seen.add(name)
    est = categorical.get(name)
    reason = networks.basket_exclusion(est)
    if reason:
      raise ValueError(f"Basket entry {entry!r}: '{name}' cannot join a "
                       f"gradient basket: {reason}.")
    if count is None and not est.facts.cost.fixed:
      count = evaluations
    try:
      _, count, _ = resolve_override(config, name, count)
    except (ValueError, TypeError) as e:
      raise ValueError(f"Basket entry {entry!r}: {e}") from None
    basket.append((name, count))
  return basket, excluded
