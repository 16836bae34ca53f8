"""Keras 3 layers over the functional estimators.

A latent layer is the estimator in Keras form:

* ``layer(logits, objective=fn)`` returns the estimator's estimate of
  E_q[fn(b)] (``[*batch]``), with the estimator gradient attached to
  ``logits`` and the ordinary pathwise gradient to whatever ``fn`` uses.
  ``fn`` gets the samples with a leading sample axis.
* ``layer(logits, context, objective=fn)`` calls ``fn(samples, context)``;
  in a functional model pass the tensors the objective needs (the data ``x``
  for a decoder likelihood) as ``context`` so Keras tracks them.
* ``layer(logits)`` without an objective draws one sample (no gradient):
  ``[*batch, D]`` for Bernoulli, ``[*batch, V, C]`` one-hot for categorical.
  This is what generation uses.

An objective given to the constructor (a Keras layer or any serializable
callable) is tracked with the layer's weights and is used when ``call`` gets
none, which is how a functional model carries its decoder.

Randomness comes from a ``keras.random.SeedGenerator``: each call draws a
fresh stateless seed from it, so a layer built with ``seed=s`` replays the
same sequence of samples, eagerly, in ``tf.function`` and under XLA.

Estimator options go in ``estimator_options`` and are serialized with the
layer. The relaxation and straight-through estimators (``gumbel_softmax``,
``straight_through``, ``st_gumbel_softmax``, ``gumbel_rao``, ``reinmax``)
need an objective differentiable in its samples; their ``temperature`` may
be a float (serialized as a float) or a scalar ``tf.Variable`` /
``keras.Variable`` that the caller owns and assigns to anneal it (read at
every call, no retracing). A variable is not serialized and not tracked as
a weight of the layer: ``get_config`` records its current value as a float,
so a restored layer has that fixed temperature until the caller passes a
variable again.

Estimators with trainable state (``facts.trainable_state``: the learned
control variates ``rebar`` and ``relax``) get it from the layer: ``build``
creates one weight per name of ``estimator.state_spec(event_shape)`` (with
those initial values), so the control-variate parameters are trainable
variables of the layer, saved and restored with its weights and updated by
the model's optimizer; ``call`` passes them as the estimator's
``control_variate`` option. The gradient they receive from the loss is the
gradient of the estimator's single-sample variance estimate
(:mod:`tf_discrete.bernoulli.control_variates`), so one optimizer step over
``model.trainable_variables`` trains them to lower the variance. The state
is the layer's: ``estimator_options`` may not contain ``control_variate``.
"""

import importlib
import types

import keras
import numpy as np

from tf_discrete import _core


def _serializable_options(options):
  """Estimator options for a config: tensors and variables (a caller's
  annealed ``temperature``) become their current value as a Python number;
  everything else is kept as is."""
  config = {}
  for name, value in options.items():
    if hasattr(value, "dtype") and hasattr(value, "shape"):
      value = np.asarray(keras.ops.convert_to_numpy(value)).item()
    config[name] = value
  return config


class _LatentLayer(keras.layers.Layer):
  """Shared implementation; subclasses name their family."""

  family_name = ""

  def __init__(self, estimator, num_samples=None, seed=None, objective=None,
               estimator_options=None, **kwargs):
    super().__init__(**kwargs)
    self._family = importlib.import_module(f"tf_discrete.{self.family_name}")
    # A read-only mapping, which Keras does not track: a variable option
    # (the caller's temperature) must not become a weight of the layer.
    self.estimator_options = types.MappingProxyType(
        dict(estimator_options or {}))
    # Fail at construction on unknown names and invalid options.
    est = self._family.get(estimator)
    est.resolve_options(self.estimator_options)
    if est.facts.trainable_state and "control_variate" in (
        self.estimator_options):
      raise ValueError(
          f"Estimator '{est.name}': the layer creates and owns the "
          f"control-variate state (as weights, in build); do not pass "
          f"`control_variate` in `estimator_options`.")
    self._state = None
    self.estimator = estimator
    self.num_samples = num_samples
    self.seed = seed
    self.objective = objective
    self.seed_generator = keras.random.SeedGenerator(seed)

  def build(self, logits_shape, context_shape=None):
    del context_shape
    est = self._family.get(self.estimator)
    if est.facts.trainable_state:
      event_rank = self._family.FAMILY.event_rank
      event_shape = list(logits_shape)[-event_rank:]
      if None in event_shape:
        raise ValueError(
            f"Estimator '{est.name}' needs static event dimensions to build "
            f"its control-variate state, got logits shape {logits_shape}.")
      state = {}
      for name, value in est.state_spec(event_shape).items():
        state[name] = self.add_weight(
            name=name, shape=value.shape,
            initializer=lambda shape, dtype, v=value: keras.ops.cast(v, dtype),
            trainable=True)
      # Read-only, so Keras does not track the weights a second time.
      self._state = types.MappingProxyType(state)
    self.built = True

  # The seed generator's position is saved with the weights, so that a
  # loaded model draws the same samples as the saved one would have.
  _SEED_STATE = "seed_generator_state"

  def save_own_variables(self, store):
    super().save_own_variables(store)
    store[self._SEED_STATE] = keras.ops.convert_to_numpy(
        self.seed_generator.state)

  def load_own_variables(self, store):
    keys = [k for k in store.keys() if k != self._SEED_STATE]
    super().load_own_variables({k: store[k] for k in keys})
    if self._SEED_STATE in store.keys():
      self.seed_generator.state.assign(store[self._SEED_STATE][...])

  @property
  def control_variate(self):
    """The control-variate weights by name (None for an estimator without
    trainable state, or before ``build``)."""
    return None if self._state is None else dict(self._state)

  def call(self, logits, context=None, objective=None):
    objective = objective or self.objective
    seed = self.seed_generator.next()
    if objective is None:
      return self._family.sample(logits, seed=seed)
    if context is not None:
      bound_objective = lambda samples: objective(samples, context)
    else:
      bound_objective = objective
    options = dict(self.estimator_options)
    if self._state is not None:
      options["control_variate"] = dict(self._state)
    return self._family.estimate(
        bound_objective, logits, self.estimator, num_samples=self.num_samples,
        seed=seed, **options)

  def compute_output_spec(self, logits, context=None, objective=None):
    objective = objective or self.objective
    event_rank = self._family.FAMILY.event_rank
    shape = logits.shape if objective is None else logits.shape[:-event_rank]
    return keras.KerasTensor(shape, dtype=logits.dtype)

  def get_config(self):
    config = super().get_config()
    config.update(
        estimator=self.estimator,
        num_samples=self.num_samples,
        seed=self.seed,
        estimator_options=_serializable_options(self.estimator_options),
        objective=(None if self.objective is None else
                   keras.saving.serialize_keras_object(self.objective)),
    )
    return config

  @classmethod
  def from_config(cls, config):
    config = dict(config)
    if config.get("objective") is not None:
      config["objective"] = keras.saving.deserialize_keras_object(
          config["objective"])
    return cls(**config)


@keras.saving.register_keras_serializable(package="tf_discrete")
class BernoulliLatent(_LatentLayer):
  """Factorized Bernoulli latents over ``logits [*batch, D]``.

  Args:
    estimator: a name from ``tf_discrete.bernoulli.available()``.
    num_samples: objective evaluations per call (see
      :func:`tf_discrete.bernoulli.estimate`); None for the default.
    seed: int seed of the layer's ``SeedGenerator``; None for a random one.
    objective: optional default objective (a Keras layer or serializable
      callable), used when ``call`` gets none.
    estimator_options: dict of estimator options
      (``tf_discrete.bernoulli.get(estimator).facts.options``), e.g.
      ``{"temperature": 0.5}`` for ``gumbel_softmax``. A ``temperature``
      variable stays the caller's: it is read at every call and serialized
      as its current value (module docstring).
  """

  family_name = "bernoulli"

  def __init__(self, estimator="disarm", num_samples=None, seed=None,
               objective=None, estimator_options=None, **kwargs):
    super().__init__(estimator, num_samples, seed, objective,
                     estimator_options, **kwargs)


@keras.saving.register_keras_serializable(package="tf_discrete")
class CategoricalLatent(_LatentLayer):
  """Independent categorical latents over ``logits [*batch, V, C]``.

  Without an objective, ``layer(logits)`` draws one one-hot sample
  ``[*batch, V, C]`` (no gradient).

  Args:
    estimator: a name from ``tf_discrete.categorical.available()``.
    num_samples: objective evaluations per call (see
      :func:`tf_discrete.categorical.estimate`); None for the default.
    seed: int seed of the layer's ``SeedGenerator``; None for a random one.
    objective: optional default objective (a Keras layer or serializable
      callable), used when ``call`` gets none.
    estimator_options: dict of estimator options (e.g.
      ``{"logits_order": "ascending"}``, ``{"temperature": 0.5}``; see
      ``tf_discrete.categorical.get(estimator).facts.options``). A
      ``temperature`` variable stays the caller's: it is read at every call
      and serialized as its current value (module docstring).
  """

  family_name = "categorical"

  def __init__(self, estimator="rloo", num_samples=None, seed=None,
               objective=None, estimator_options=None, **kwargs):
    super().__init__(estimator, num_samples, seed, objective,
                     estimator_options, **kwargs)
