r"""Generic training loop of the experiment binaries.

One :class:`Trainer` drives any model that follows this protocol (the
Bernoulli VAE of :mod:`tf_discrete.vae`; a categorical VAE later):

* ``model.parameter_groups() -> {group: [tf.Variable]}``, one optimizer per
  group;
* ``model.variance_group``: the group whose gradient variance is tracked
  (the encoder, whose gradient comes from the estimator);
* ``model.training_objective(x, seed, estimator=None, num_samples=None)
  -> (surrogate, estimate)``: scalars; ``grad(surrogate)`` is the ascent
  direction, ``estimate`` the reported training objective. ``estimator`` /
  ``num_samples`` override the model's own (gradient basket, bias check);
* ``model.log_likelihood_bound(x, num_samples, seed) -> [B]``: the
  ``num_samples``-sample importance-weighted bound (1: the ELBO).

What the loop does, and why it is built this way:

* **Everything per step is in-graph.** The training images live on the
  device as a variable; the batch indices (a seeded permutation per epoch)
  and the binarization are drawn inside the compiled function. All
  randomness is stateless, derived from ``(seed, step, replica)``, so a
  rerun or a resumed run draws the same numbers and XLA/TPU can compile
  it.
* **Many steps per call.** One ``tf.function`` runs a ``tf.while_loop`` of
  steps (with ``jit_compile`` the whole loop is one XLA program, compiled
  once for any number of steps), so Python is paid per call, not per step.
  Calls end at the next progress line, evaluation, checkpoint or epoch
  boundary.
* **Gradient variance** (DESIGN §4): exponential moving averages (decay
  0.999, bias-corrected) of :math:`g` and :math:`g^2` of the batch-mean
  gradient of the variance group, updated in-graph every step; reported
  variance = mean over parameters of :math:`E[g^2] - E[g]^2`. With a
  gradient basket the same bookkeeping runs for other estimators' gradients
  on the same batches (computed, never applied).
* **Evaluation** is one compiled function per evaluation set, chunked over
  images with all samples of a chunk in one batched pass.
* **Outputs** in ``logdir``: ``metrics.jsonl`` (one JSON object per
  evaluation) and TensorBoard events, ``checkpoints/``, ``config.json``,
  and at the end ``summary.json`` and ``curves.png``.
* **Resume**: a run restarted with the same ``logdir`` restores the latest
  checkpoint (models, optimizers, step, moving averages, seed) and drops
  the ``metrics.jsonl`` rows written after it, so none are duplicated.
* **tf.distribute**: the batch is global; each replica takes its share,
  gradients are summed over replicas by the optimizers (the per-replica
  loss is scaled by 1/replicas), the variance bookkeeping all-reduces its
  own copy.
"""

import dataclasses
import json
import math
import os
import time
from typing import Any, Callable, Collection, Dict, List, Mapping, Optional
from typing import Sequence, Tuple

from absl import logging
import numpy as np
import tensorflow as tf

from tensorflow.core.framework import summary_pb2
from tf_discrete import _core

STRATEGIES = ("default", "mirrored", "tpu")
METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
CURVES_FILE = "curves.png"
CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"

# Independent random streams derived from the run seed.
_TRAIN_STREAM, _PERMUTATION_STREAM, _EVAL_STREAM, _BIAS_STREAM = range(4)


def make_strategy(name: str = "default", tpu: Optional[str] = None):
  """Builds a ``tf.distribute`` strategy by name.

  Args:
    name: "default" (no distribution), "mirrored" (all GPUs, else all
      logical CPU devices) or "tpu".
    tpu: TPU address for ``TPUClusterResolver`` (strategy "tpu" only; empty
      or None: the local TPU VM).
  """
  if name not in STRATEGIES:
    raise ValueError(f"`strategy` must be one of {STRATEGIES}, got {name!r}.")
  if tpu and name != "tpu":
    raise ValueError(f"`tpu`={tpu!r} needs strategy 'tpu', got {name!r}.")
  if name == "default":
    return tf.distribute.get_strategy()
  if name == "mirrored":
    devices = ([d.name for d in tf.config.list_logical_devices("GPU")] or
               [d.name for d in tf.config.list_logical_devices("CPU")])
    return tf.distribute.MirroredStrategy(devices)
  resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or "")
  tf.config.experimental_connect_to_cluster(resolver)
  tf.tpu.experimental.initialize_tpu_system(resolver)
  return tf.distribute.TPUStrategy(resolver)


@dataclasses.dataclass(frozen=True, eq=False)
class EvalSet:
  """One evaluation metric: the mean bound over a set of images.

  Attributes:
    name: metric name, e.g. "test_iwae".
    images: float32 ``[N, D]``.
    num_samples: samples of the bound (1: ELBO).
    binarize: draw Bernoulli(images) afresh at each evaluation (grey-level
      training images); False for already binary sets.
  """
  name: str
  images: np.ndarray
  num_samples: int
  binarize: bool = False


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


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Loop settings.

  Attributes:
    logdir: output folder; reused to resume.
    num_steps: total training steps.
    batch_size: global batch size.
    seed: run seed (int in [0, 2**31)); all randomness derives from it.
    eval_every, checkpoint_every, log_every: cadences in steps.
    jit_compile: XLA-compile the step (and evaluation).
    ema_decay: decay of the gradient moment averages.
    eval_rows: sample-rows (images x samples) per evaluation chunk.
    basket: ``(estimator, num_samples)`` pairs whose gradient variance is
      tracked on the training batches besides the model's own.
    bias_check: a :class:`BiasCheck`, or None.
  """
  logdir: str
  num_steps: int
  batch_size: int = 50
  seed: int = 0
  eval_every: int = 10_000
  checkpoint_every: int = 10_000
  log_every: int = 1_000
  jit_compile: bool = True
  ema_decay: float = 0.999
  eval_rows: int = 10_000
  basket: Tuple[Tuple[str, Optional[int]], ...] = ()
  bias_check: Optional[BiasCheck] = None

  def __post_init__(self):
    for name in ("num_steps", "batch_size", "eval_every", "checkpoint_every",
                 "log_every", "eval_rows"):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be a positive int, got {value!r}.")
    if not 0 <= self.seed < 2**31:
      raise ValueError(f"`seed` must be in [0, 2**31), got {self.seed}.")
    if not 0 < self.ema_decay < 1:
      raise ValueError(f"`ema_decay` must be in (0, 1), got {self.ema_decay}.")


def _fold(seed, *data):
  """Folds integers (step, replica, ...) into a stateless int32 seed."""
  for d in data:
    # int32 data keeps the seed int32: an int64 seed makes XLA treat it as
    # a compile-time constant, i.e. one compilation per step value.
    seed = tf.random.experimental.stateless_fold_in(seed, tf.cast(d, tf.int32))
  return seed


def _replica_id():
  return tf.distribute.get_replica_context().replica_id_in_sync_group


def _per_replica_jit(fn):
  """``fn`` XLA-compiled, traced separately for each replica.

  A function traced once would capture the first replica's copies of the
  mirrored variables, which an XLA program on another device cannot read.
  """
  compiled = {}

  def call(*args):
    replica = int(tf.get_static_value(_replica_id()))
    if replica not in compiled:
      compiled[replica] = tf.function(fn, jit_compile=True)
    return compiled[replica](*args)

  return call


def _has_plain_update(optimizer) -> bool:
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
  (≈0.2 ms per step for the 314k weights of the linear VAE, measured by
  ``experiments.benchmark``). When none of it applies
  (:func:`_has_plain_update`) the same update is ``update_step`` per
  variable plus the iteration count, which is what this runs; otherwise it
  calls ``apply``.
  """
  if not _has_plain_update(optimizer) or any(
      getattr(v, "constraint", None) is not None for v in variables):
    optimizer.apply(grads, variables)
    return
  learning_rate = optimizer.learning_rate
  for grad, variable in zip(grads, variables):
    optimizer.update_step(grad, variable, learning_rate)
  optimizer.iterations.assign_add(1)


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


_SCALAR_METADATA = summary_pb2.SummaryMetadata(
    plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"),
    data_class=summary_pb2.DATA_CLASS_SCALAR).SerializeToString()


class MetricsLog:
  """``metrics.jsonl`` plus TensorBoard scalars, one row per evaluation."""

  def __init__(self, logdir: str):
    self.path = os.path.join(logdir, METRICS_FILE)
    self.writer = tf.summary.create_file_writer(logdir)

  def rows(self) -> List[Dict[str, Any]]:
    if not os.path.exists(self.path):
      return []
    with open(self.path) as f:
      return [json.loads(line) for line in f if line.strip()]

  def truncate(self, max_step: int) -> int:
    """Drops rows with step > max_step (written after the checkpoint)."""
    rows = self.rows()
    keep = [r for r in rows if r["step"] <= max_step]
    if len(keep) != len(rows):
      tmp = self.path + ".tmp"
      with open(tmp, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in keep)
      os.replace(tmp, self.path)
    return len(rows) - len(keep)

  def write(self, row: Dict[str, Any]):
    row = {k: (v if not isinstance(v, float) or math.isfinite(v) else None)
           for k, v in row.items()}
    with open(self.path, "a") as f:
      f.write(json.dumps(row) + "\n")
      f.flush()
      os.fsync(f.fileno())
    with self.writer.as_default(step=row["step"]):
      for key, value in row.items():
        if key not in ("step", "wall_time") and isinstance(value, float):
          # tf.summary.scalar needs the tensorboard package; the core op
          # with the scalars plugin's metadata writes the same event.
          tf.summary.write(key, tf.constant(value, tf.float32),
                           metadata=_SCALAR_METADATA)
    self.writer.flush()


def plot_curves(rows: Sequence[Mapping[str, Any]], path: str):
  """Plots the metrics of ``rows`` against the step.

  One panel for the bounds (train ELBO, valid/test IWAE, training
  objective), one for the gradient variances (log scale), one per other
  metric (throughput, evaluation time, bias check).
  """
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  skip = ("step", "wall_time", "train_time_sec")
  keys = sorted({k for r in rows for k, v in r.items()
                 if k not in skip and isinstance(v, float)})
  bounds = [k for k in keys if k.endswith(("elbo", "iwae", "objective"))]
  variances = [k for k in keys if k.startswith("grad_variance")]
  panels = []
  if bounds:
    panels.append(("bounds (nats, higher is better)", bounds, "linear"))
  if variances:
    panels.append(("encoder gradient variance", variances, "log"))
  panels += [(k, [k], "linear") for k in keys
             if k not in bounds and k not in variances]
  panels = panels or [("no metrics yet", [], "linear")]
  cols = min(3, len(panels))
  fig, axes = plt.subplots(math.ceil(len(panels) / cols), cols,
                           figsize=(5 * cols, 3.5 * math.ceil(
                               len(panels) / cols)), squeeze=False)
  for ax, (title, names, scale) in zip(axes.flat, panels):
    for name in names:
      points = [(r["step"], r[name]) for r in rows
                if isinstance(r.get(name), float)]
      if points:
        ax.plot(*zip(*points), marker=".", label=name)
    ax.set(title=title, xlabel="step", yscale=scale)
    if len(names) > 1:
      ax.legend(fontsize="small")
  for ax in axes.flat[len(panels):]:
    ax.axis("off")
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


class Trainer:
  """Trains a model (see the module docstring for the protocol).

  Args:
    model_fn: builds the model (called under the strategy's scope).
    optimizer_fns: ``{group: () -> keras optimizer}``, one per parameter
      group of the model.
    train_images: float32 ``[N, D]`` grey levels (or 0/1).
    eval_sets: :class:`EvalSet` s evaluated every ``eval_every`` steps.
    config: a :class:`TrainConfig`.
    dynamic: binarize training batches (Bernoulli of the grey levels).
    binarize: ``(images, seed) -> 0/1`` stateless, jit-compatible;
      defaults to ``tf_discrete.datasets.binarize``.
    strategy: a ``tf.distribute`` strategy; None for the default.
    run_config: JSON-able description of the run (the flags); stored in
      ``config.json`` and ``summary.json``.
    resumable_keys: keys of ``run_config`` that may change when resuming
      (e.g. ``num_steps``); any other difference is an error.
  """

  def __init__(self, model_fn: Callable[[], Any],
               optimizer_fns: Mapping[str, Callable[[], Any]],
               train_images: np.ndarray, eval_sets: Sequence[EvalSet],
               config: TrainConfig, *, dynamic: bool = True,
               binarize: Optional[Callable] = None, strategy=None,
               run_config: Optional[Mapping[str, Any]] = None,
               resumable_keys: Collection[str] = ()):
    self.config = config
    self.strategy = strategy or tf.distribute.get_strategy()
    self.run_config = dict(run_config or {})
    self.resumable_keys = set(resumable_keys)
    replicas = self.strategy.num_replicas_in_sync
    if config.batch_size % replicas:
      raise ValueError(
          f"`batch_size`={config.batch_size} must be divisible by the "
          f"{replicas} replicas of the strategy.")
    train_images = np.asarray(train_images, np.float32)
    if train_images.shape[0] < config.batch_size:
      raise ValueError(f"`batch_size`={config.batch_size} exceeds the "
                       f"{train_images.shape[0]} training images.")
    self._num_train = train_images.shape[0]
    self._local_batch = config.batch_size // replicas
    self._batches_per_epoch = self._num_train // config.batch_size
    self._dynamic = dynamic
    if binarize is None:
      from tf_discrete import datasets  # pylint: disable=g-import-not-at-top
      binarize = datasets.binarize
    self._binarize = binarize
    self.eval_sets = list(eval_sets)
    base = tf.constant([0, config.seed], tf.int32)
    self._seeds = [_fold(base, s) for s in range(4)]

    with self.strategy.scope():
      self.model = model_fn()
      self.groups = self.model.parameter_groups()
      if set(optimizer_fns) != set(self.groups):
        raise ValueError(
            f"`optimizer_fns` must have one optimizer per parameter group "
            f"{sorted(self.groups)}, got {sorted(optimizer_fns)}.")
      self.optimizers = {k: optimizer_fns[k]() for k in self.groups}
      for k, opt in self.optimizers.items():
        opt.build(self.groups[k])
      self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
      self.seed = tf.Variable(config.seed, dtype=tf.int64, trainable=False,
                              name="seed")
      self.train_time = tf.Variable(0.0, dtype=tf.float64, trainable=False,
                                    name="train_time_sec")
      self.moments = GradientMoments(
          ["main"] + [name for name, _ in config.basket],
          self.groups[self.model.variance_group], config.ema_decay)
      # Data on the device; not part of the checkpoint.
      self._train_images = tf.Variable(train_images, trainable=False)
      self._order = tf.Variable(tf.range(self._num_train), trainable=False)
      self._eval_images = [tf.Variable(np.asarray(s.images, np.float32),
                                       trainable=False)
                           for s in self.eval_sets]
      if config.bias_check is not None:
        self._bias_images = tf.Variable(
            np.asarray(config.bias_check.images, np.float32),
            trainable=False)

    self.checkpoint = tf.train.Checkpoint(
        model=self.model, step=self.step, seed=self.seed,
        train_time=self.train_time, moments=self.moments,
        **{f"optimizer_{k}": v for k, v in self.optimizers.items()})
    self.manager = tf.train.CheckpointManager(
        self.checkpoint, os.path.join(config.logdir, CHECKPOINT_DIR),
        max_to_keep=3)
    self._build_functions()

  # ------------------------------------------------------------------------
  # Compiled functions.
  # ------------------------------------------------------------------------

  def _build_functions(self):
    jit = self.config.jit_compile
    default = not tf.distribute.has_strategy() and (
        self.strategy is tf.distribute.get_strategy())
    is_tpu = isinstance(self.strategy, tf.distribute.TPUStrategy)
    # Without distribution the whole multi-step loop is one XLA program.
    # Under a strategy, XLA compiles the per-replica computations (the TPU
    # compiles everything regardless); the loop, the all-reduces and the
    # optimizer updates stay outside.
    outer_jit = jit if default else None
    inner = (_per_replica_jit if jit and not default and not is_tpu
             else lambda fn: fn)
    self._replica_gradients = inner(self._replica_gradients_impl)
    self._train_fn = tf.function(self._train_loop, jit_compile=outer_jit)
    self._eval_fns = []
    for index, eval_set in enumerate(self.eval_sets):
      replica_fn = inner(self._make_eval_replica(index, eval_set))
      self._eval_fns.append(tf.function(
          self._make_eval(replica_fn, eval_set), jit_compile=outer_jit))
    if self.config.bias_check is not None:
      replica_fn = inner(self._bias_replica)
      self._bias_fn = tf.function(
          lambda seed: self.strategy.reduce(
              tf.distribute.ReduceOp.SUM,
              self.strategy.run(replica_fn, args=(seed,)), axis=None),
          jit_compile=outer_jit)

  def _gradients(self, x, seed, estimator=None, num_samples=None,
                 groups=None):
    """Gradients of -surrogate (descent directions) per group; estimate."""
    groups = list(groups or self.groups)
    variables = {g: self.groups[g] for g in groups}
    with tf.GradientTape(watch_accessed_variables=False) as tape:
      tape.watch(variables)
      surrogate, estimate = self.model.training_objective(
          x, seed, estimator=estimator, num_samples=num_samples)
      loss = -surrogate
    grads = tape.gradient(loss, variables,
                          unconnected_gradients=tf.UnconnectedGradients.ZERO)
    return grads, estimate

  def _train_batch(self, step, seed):
    """This replica's share of the global batch of ``step``, binarized."""
    position = step % self._batches_per_epoch
    start = (tf.cast(position, tf.int32) * self.config.batch_size
             + tf.cast(_replica_id(), tf.int32) * self._local_batch)
    # tf.gather, not tf.slice: XLA resolves a tf.slice offset as a
    # compile-time constant when it can (here from the step variable), which
    # means one compilation per call.
    indices = tf.gather(self._order, start + tf.range(self._local_batch))
    x = tf.gather(self._train_images, indices)
    return self._binarize(x, seed) if self._dynamic else x

  def _replica_gradients_impl(self, step):
    """This replica's batch, gradients, tracked gradients and estimate."""
    replicas = self.strategy.num_replicas_in_sync
    seed = _fold(self._seeds[_TRAIN_STREAM], step, _replica_id())
    data_seed, model_seed = _core.split_seed(seed, 2)
    x = self._train_batch(step, data_seed)
    grads, estimate = self._gradients(x, model_seed)
    # Per-replica share of the global-batch mean; the optimizers sum over
    # replicas.
    grads = tf.nest.map_structure(lambda g: g / replicas, grads)
    group = self.model.variance_group
    tracked = {"main": grads[group]}
    for name, num_samples in self.config.basket:
      basket_grads, _ = self._gradients(x, model_seed, name, num_samples,
                                        groups=[group])
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

  def _permutation(self, epoch):
    """The order of the training images in ``epoch``."""
    noise = tf.random.stateless_uniform(
        [self._num_train], _fold(self._seeds[_PERMUTATION_STREAM], epoch),
        alg=tf.random.Algorithm.PHILOX)
    return tf.argsort(noise, stable=True)

  def _train_loop(self, num_steps):
    """Runs ``num_steps`` steps, all in one epoch; mean estimate.

    The epoch's image order is computed once per call (into a variable, so
    that each device holds a copy), which is why calls never cross an epoch
    boundary.
    """
    self._order.assign(self._permutation(self.step // self._batches_per_epoch))

    def body(i, total):
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

  def eval_chunks(self, eval_set: EvalSet) -> Tuple[int, int]:
    """(images per chunk, chunks) of ``eval_set``'s evaluation: as many
    images as fit ``eval_rows`` sample-rows, at least one."""
    num_images = int(eval_set.images.shape[0])
    chunk = max(1, min(num_images,
                       self.config.eval_rows // eval_set.num_samples))
    return chunk, -(-num_images // chunk)

  def _make_eval_replica(self, index, eval_set):
    num_images = int(eval_set.images.shape[0])
    chunk, num_chunks = self.eval_chunks(eval_set)
    images = self._eval_images[index]

    def replica_fn(seed):
      """Sum of the bound over this replica's chunks (chunk c: c % R == r)."""
      data_seed, sample_seed = _core.split_seed(seed, 2)
      total = tf.constant(0.0)
      for c in tf.range(_replica_id(), num_chunks,
                        self.strategy.num_replicas_in_sync):
        rows = c * chunk + tf.range(chunk)
        x = tf.gather(images, tf.minimum(rows, num_images - 1))
        if eval_set.binarize:
          x = self._binarize(x, _fold(data_seed, c))
        bound = self.model.log_likelihood_bound(
            x, eval_set.num_samples, _fold(sample_seed, c))
        total += tf.reduce_sum(tf.where(rows < num_images, bound, 0.0))
      return total

    return replica_fn

  def _make_eval(self, replica_fn, eval_set):
    num_images = float(eval_set.images.shape[0])

    def eval_fn(seed):
      total = self.strategy.reduce(
          tf.distribute.ReduceOp.SUM,
          self.strategy.run(replica_fn, args=(seed,)), axis=None)
      return total / num_images

    return eval_fn

  def _bias_replica(self, seed):
    """Sums of g, g^2 over this replica's repeats: estimator, reference."""
    check = self.config.bias_check
    group = self.model.variance_group
    main_seed, reference_seed = _core.split_seed(seed, 2)

    def flat_gradient(seed, estimator=None, num_samples=None):
      grads, _ = self._gradients(self._bias_images, seed, estimator,
                                 num_samples, groups=[group])
      return tf.concat([tf.reshape(g, [-1]) for g in grads[group]], 0)

    size = sum(int(np.prod(v.shape)) for v in self.groups[group])
    replica, replicas = _replica_id(), self.strategy.num_replicas_in_sync

    def moments(repeats, seed, estimator=None, num_samples=None):
      sums = tf.zeros([2, size])
      for i in tf.range(replica, repeats, replicas):
        g = flat_gradient(_fold(seed, i), estimator, num_samples)
        sums += tf.stack([g, tf.square(g)])
      return sums

    return tf.concat([
        moments(check.repeats, main_seed),
        moments(check.reference_repeats, reference_seed,
                check.reference_estimator, check.reference_num_samples)], 0)

  # ------------------------------------------------------------------------
  # Driver.
  # ------------------------------------------------------------------------

  def evaluate(self, step: int) -> Dict[str, float]:
    """All evaluation metrics at ``step`` (seeded by the step)."""
    seed = _fold(self._seeds[_EVAL_STREAM], step)
    metrics = {}
    for index, (eval_set, fn) in enumerate(zip(self.eval_sets,
                                               self._eval_fns)):
      metrics[eval_set.name] = float(fn(_fold(seed, index)))
    for name, value in self.moments.variances().items():
      metrics["grad_variance" if name == "main" else
              f"grad_variance/{name}"] = value
    if self.config.bias_check is not None:
      metrics.update(self._bias_metrics(step))
    return metrics

  def _bias_metrics(self, step):
    check = self.config.bias_check
    sums = self._bias_fn(_fold(self._seeds[_BIAS_STREAM], step)).numpy()
    sums = sums.astype(np.float64)
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

  def _check_run_config(self, resuming: bool):
    path = os.path.join(self.config.logdir, CONFIG_FILE)
    if resuming and os.path.exists(path):
      with open(path) as f:
        stored = json.load(f)
      changed = sorted(
          k for k in set(stored) | set(self.run_config)
          if k not in self.resumable_keys
          and stored.get(k) != self.run_config.get(k))
      if changed:
        diffs = ", ".join(f"{k}: {stored.get(k)!r} -> "
                          f"{self.run_config.get(k)!r}" for k in changed)
        raise ValueError(
            f"{self.config.logdir} holds a run with other settings ({diffs}); "
            f"resume with the same flags or use another logdir.")
    with open(path, "w") as f:
      json.dump(self.run_config, f, indent=1, sort_keys=True)

  def _steps_to_next_event(self, step: int) -> int:
    cfg = self.config
    periods = (cfg.log_every, cfg.eval_every, cfg.checkpoint_every,
               self._batches_per_epoch)
    return min([cfg.num_steps - step] + [p - step % p for p in periods])

  def _restore(self) -> int:
    """Restores the latest checkpoint, if any; returns the step."""
    cfg = self.config
    resuming = self.manager.latest_checkpoint is not None
    self._check_run_config(resuming)
    if resuming:
      self.checkpoint.restore(self.manager.latest_checkpoint).assert_consumed()
      if int(self.seed.numpy()) != cfg.seed:
        raise ValueError(f"{cfg.logdir} was written with seed "
                         f"{int(self.seed.numpy())}, not {cfg.seed}.")
    return int(self.step.numpy())

  def run(self) -> Dict[str, Any]:
    """Trains to ``num_steps`` (resuming if possible); returns the summary."""
    cfg = self.config
    session_start = time.time()
    os.makedirs(cfg.logdir, exist_ok=True)
    step = self._restore()
    metrics_log = MetricsLog(cfg.logdir)
    # Rows after the checkpoint are recomputed; without a checkpoint, all.
    dropped = metrics_log.truncate(step if step else -1)
    if step:
      logging.info("Resumed %s at step %d (dropped %d metrics rows written "
                   "after it).", self.manager.latest_checkpoint, step, dropped)

    # Compile before timing: a zero-step call traces and compiles the loop.
    compile_start = time.time()
    self._train_fn(tf.constant(0, tf.int64))
    compile_time = time.time() - compile_start
    logging.info("Compiled the training step in %.1f s.", compile_time)

    objective_name = getattr(self.model, "objective_name", "objective")
    since_log, since_eval, session = _Meter(), _Meter(), _Meter()
    eval_time = None
    if step == 0:
      eval_time = self._evaluate_and_log(metrics_log, 0, since_eval)
    while step < cfg.num_steps:
      n = self._steps_to_next_event(step)
      start = time.perf_counter()
      estimate = float(self._train_fn(tf.constant(n, tf.int64)))
      elapsed = time.perf_counter() - start
      step += n
      self.train_time.assign_add(elapsed)
      for meter in (since_log, since_eval, session):
        meter.add(n, elapsed, estimate)
      done = step == cfg.num_steps
      if step % cfg.log_every == 0 or done:
        logging.info("step %d/%d  %.1f steps/s (%.3f ms/step)  train %s %.3f",
                     step, cfg.num_steps, since_log.steps_per_sec,
                     1e3 / since_log.steps_per_sec, objective_name,
                     since_log.mean_estimate)
        since_log = _Meter()
      if step % cfg.eval_every == 0 or done:
        eval_time = self._evaluate_and_log(metrics_log, step, since_eval)
        since_eval = _Meter()
      if step % cfg.checkpoint_every == 0 or done:
        self.manager.save(checkpoint_number=step)

    rows = metrics_log.rows()
    total_time = float(self.train_time.numpy())
    summary = {
        "steps": step,
        # Training steps only (no evaluation, no compilation), over all
        # sessions of the run.
        "train_steps_per_sec": step / total_time if total_time else None,
        "ms_per_step": 1e3 * total_time / step if total_time else None,
        "session_steps": session.steps,
        "session_train_steps_per_sec": session.steps_per_sec,
        "wall_time_sec": time.time() - session_start,
        "train_time_sec": total_time,
        "compile_time_sec": compile_time,
        "eval_time_sec": eval_time,
        "replicas": self.strategy.num_replicas_in_sync,
        **{k: v for k, v in (rows[-1] if rows else {}).items()
           if k not in ("step", "wall_time")},
        "flags": self.run_config,
    }
    with open(os.path.join(cfg.logdir, SUMMARY_FILE), "w") as f:
      json.dump(summary, f, indent=1)
    plot_curves(rows, os.path.join(cfg.logdir, CURVES_FILE))
    return summary

  def _evaluate_and_log(self, metrics_log, step, since_eval):
    start = time.perf_counter()
    metrics = self.evaluate(step)
    eval_time = time.perf_counter() - start
    row = {"step": step, "wall_time": time.time(), **metrics,
           "eval_time_sec": eval_time,
           "train_time_sec": float(self.train_time.numpy())}
    if since_eval.steps:
      row["train_objective"] = since_eval.mean_estimate
      row["steps_per_sec"] = since_eval.steps_per_sec
    metrics_log.write(row)
    logging.info("step %d  %s", step, "  ".join(
        f"{k} {v:.4g}" for k, v in metrics.items()))
    return eval_time


class _Meter:
  """Training steps, their time and their mean estimate since creation."""

  def __init__(self):
    self.steps, self.seconds, self._total = 0, 0.0, 0.0

  def add(self, steps: int, seconds: float, mean_estimate: float):
    self.steps += steps
    self.seconds += seconds
    self._total += mean_estimate * steps

  @property
  def steps_per_sec(self) -> Optional[float]:
    return self.steps / self.seconds if self.seconds else None

  @property
  def mean_estimate(self) -> Optional[float]:
    return self._total / self.steps if self.steps else None
