"""The compiled training step: batch, gradients, moment tracking, update.

Everything per step is in-graph. The training images live on the device
as a variable; the batch indices (a seeded permutation per epoch) and the
binarization are drawn inside the compiled function. All randomness is
stateless, derived from ``(seed, step, replica)``, so a rerun or a resumed
run draws the same numbers and XLA/TPU can compile it.

Many steps run per call: one ``tf.function`` runs a ``tf.while_loop`` of
steps (with ``jit_compile`` the whole loop is one XLA program, compiled once
for any number of steps), so Python is paid per call, not per step.

Under ``tf.distribute`` the batch is global; each replica takes its share,
gradients are summed over replicas by the optimizers (the per-replica loss
is scaled by 1/replicas), the moment tracking all-reduces its own copy.
"""

from typing import Callable, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from experiments.training import distribute
from tf_discrete import _core


def has_plain_update(optimizer) -> bool:
  """Whether ``optimizer.apply`` would only run ``update_step`` per variable.

  True for a Keras optimizer with none of the features its ``apply`` wraps
  around the update: gradient clipping, weight decay, EMA of the weights,
  gradient accumulation, loss scaling, and no cross-replica strategy.
  """
  features = ("clipnorm", "clipvalue", "global_clipnorm", "weight_decay",
              "gradient_accumulation_steps", "loss_scale_factor")
  return (hasattr(optimizer, "update_step")
          and not any(getattr(optimizer, f, None) for f in features)
          and not getattr(optimizer, "use_ema", False)
          and not tf.distribute.has_strategy())


def apply_gradients(optimizer, grads: Sequence[tf.Tensor],
                    variables: Sequence[tf.Variable]):
  """``optimizer.apply(grads, variables)``, without its bookkeeping if idle.

  Keras's ``apply`` filters empty gradients, checks variables, unscales for
  loss scaling, applies clipping/weight decay/EMA and routes each variable's
  update through the distribution strategy's merge call. Compiled with XLA
  on CPU this wrapping costs about as much as Adam's arithmetic itself
  (about 0.2 ms per step for the 314k weights of the linear VAE). When none
  of it applies (:func:`has_plain_update`) the same update is
  ``update_step`` per variable plus the iteration count, which is what this
  runs; otherwise it calls ``apply``.
  """
  if not has_plain_update(optimizer) or any(
      getattr(v, "constraint", None) is not None for v in variables):
    optimizer.apply(grads, variables)
    return
  learning_rate = optimizer.learning_rate
  for grad, variable in zip(grads, variables):
    optimizer.update_step(grad, variable, learning_rate)
  optimizer.iterations.assign_add(1)


def model_gradients(model, groups: Mapping[str, Sequence[tf.Variable]], x,
                    seed, estimator=None, num_samples=None,
                    only: Optional[Sequence[str]] = None):
  """Gradients of ``-surrogate`` (descent directions) per group; estimate.

  ``estimator`` / ``num_samples`` override the model's own (gradient
  basket, bias check); ``only`` restricts the groups differentiated.
  """
  variables = {g: groups[g] for g in (only or groups)}
  with tf.GradientTape(watch_accessed_variables=False) as tape:
    tape.watch(variables)
    surrogate, estimate = model.training_objective(
        x, seed, estimator=estimator, num_samples=num_samples)
    loss = -surrogate
  grads = tape.gradient(loss, variables,
                        unconnected_gradients=tf.UnconnectedGradients.ZERO)
  return grads, estimate


class TrainStep:
  """The multi-step training function of one run.

  Args:
    model: the model (see :mod:`experiments.training` for its protocol).
    groups: ``{group: [tf.Variable]}`` of the model.
    optimizers: ``{group: keras optimizer}``.
    moments: a :class:`~experiments.training.monitors.GradientMoments` with
      ``"main"`` and one entry per basket estimator.
    strategy: the ``tf.distribute`` strategy (built under its scope).
    train_images: float32 ``[N, D]``.
    batch_size: global batch size.
    step: int64 step variable (advanced in-graph).
    train_seed, permutation_seed: stateless seeds of the per-step noise and
      of the epochs' image order.
    dynamic: binarize each batch (Bernoulli of the grey levels).
    binarize: ``(images, seed) -> 0/1``.
    basket: ``(estimator, num_samples)`` pairs whose gradients are tracked
      (computed on the same batch and seed, never applied).
    jit_compile: XLA-compile.
  """

  def __init__(self, model, groups, optimizers, moments, strategy,
               train_images: np.ndarray, batch_size: int, step: tf.Variable,
               train_seed, permutation_seed, *, dynamic: bool,
               binarize: Callable, basket: Sequence[Tuple[str, Optional[int]]],
               jit_compile: bool):
    self.model, self.groups, self.optimizers = model, groups, optimizers
    self.moments, self.strategy, self.step = moments, strategy, step
    self.basket = tuple(basket)
    self.batch_size = batch_size
    self.num_train = int(train_images.shape[0])
    self.batches_per_epoch = self.num_train // batch_size
    self._dynamic, self._binarize = dynamic, binarize
    # Public: a reference computation of a step derives the same seeds.
    self.train_seed, self._permutation_seed = train_seed, permutation_seed
    with strategy.scope():
      # Data on the device; not part of the checkpoint.
      self.train_images = tf.Variable(train_images, trainable=False)
      self.order = tf.Variable(tf.range(self.num_train), trainable=False)
    outer_jit, inner = distribute.compilers(strategy, jit_compile)
    self._replica_gradients = inner(self._replica_gradients_impl)
    self.fn = tf.function(self._train_loop, jit_compile=outer_jit)

  def __call__(self, num_steps: int) -> tf.Tensor:
    """Runs ``num_steps`` steps (all in one epoch); their mean estimate."""
    return self.fn(tf.constant(num_steps, tf.int64))

  def batch(self, step, seed, replica=0, replicas=None):
    """Replica ``replica``'s share (of ``replicas``, default the
    strategy's) of the global batch of ``step``, binarized with ``seed``."""
    local_batch = self.batch_size // (replicas or
                                      self.strategy.num_replicas_in_sync)
    position = step % self.batches_per_epoch
    start = (tf.cast(position, tf.int32) * self.batch_size
             + tf.cast(replica, tf.int32) * local_batch)
    # tf.gather, not tf.slice: XLA resolves a tf.slice offset as a
    # compile-time constant when it can (here from the step variable), which
    # means one compilation per call.
    indices = tf.gather(self.order, start + tf.range(local_batch))
    x = tf.gather(self.train_images, indices)
    return self._binarize(x, seed) if self._dynamic else x

  def permutation(self, epoch):
    """The order of the training images in ``epoch``."""
    noise = tf.random.stateless_uniform(
        [self.num_train], distribute.fold_seed(self._permutation_seed, epoch),
        alg=tf.random.Algorithm.PHILOX)
    return tf.argsort(noise, stable=True)

  def _replica_gradients_impl(self, step):
    return self.replica_gradients(step, distribute.replica_id())

  def replica_gradients(self, step, replica, replicas=None):
    """Replica ``replica``'s batch, gradients, tracked gradients and
    estimate at ``step``, out of ``replicas`` (default: the strategy's).
    The gradients are its share (1/replicas) of the global-batch mean, so
    that their sum over replicas is the update; the reference computation
    of a distributed step calls this for every replica in turn."""
    replicas = replicas or self.strategy.num_replicas_in_sync
    seed = distribute.fold_seed(self.train_seed, step, replica)
    data_seed, model_seed = _core.split_seed(seed, 2)
    x = self.batch(step, data_seed, replica, replicas)
    grads, estimate = model_gradients(self.model, self.groups, x, model_seed)
    # Per-replica share of the global-batch mean; the optimizers sum over
    # replicas.
    grads = tf.nest.map_structure(lambda g: g / replicas, grads)
    group = self.model.variance_group
    tracked = {"main": grads[group]}
    for name, num_samples in self.basket:
      basket_grads, _ = model_gradients(self.model, self.groups, x,
                                        model_seed, name, num_samples,
                                        only=[group])
      tracked[name] = [g / replicas for g in basket_grads[group]]
    return grads, tracked, estimate

  def _replica_step(self, step):
    grads, tracked, estimate = self._replica_gradients(step)
    tracked = tf.distribute.get_replica_context().all_reduce(
        tf.distribute.ReduceOp.SUM, tracked)
    self.moments.update(tracked)
    for name, optimizer in self.optimizers.items():
      apply_gradients(optimizer, grads[name], self.groups[name])
    return estimate

  def _train_loop(self, num_steps):
    """Runs ``num_steps`` steps, all in one epoch; mean estimate.

    The epoch's image order is computed once per call (into a variable, so
    that each device holds a copy), which is why calls never cross an epoch
    boundary.
    """
    self.order.assign(self.permutation(self.step // self.batches_per_epoch))

    begin_step = getattr(self.model, "begin_step", None)

    def body(i, total):
      if begin_step is not None:
        # Scheduled estimator options (e.g. an annealed temperature), set
        # in cross-replica context so every replica reads the same value.
        begin_step(self.step.read_value())
      estimate = self.strategy.run(self._replica_step,
                                   args=(self.step.read_value(),))
      self.step.assign_add(1)
      return i + 1, total + self.strategy.reduce(
          tf.distribute.ReduceOp.MEAN, estimate, axis=None)

    # An explicit while_loop: autograph's `for _ in tf.range(n)` makes n a
    # compile-time constant under XLA, i.e. one compilation per call length.
    _, total = tf.while_loop(lambda i, _: i < num_steps, body,
                             (tf.constant(0, num_steps.dtype), 0.0))
    return total / tf.cast(tf.maximum(num_steps, 1), tf.float32)
