"""The training loop of the experiment binaries.

One :class:`Trainer` drives any model that follows this protocol (the
models of :mod:`experiments.models`):

* ``model.parameter_groups() -> {group: [tf.Variable]}``, one optimizer per
  group;
* ``model.variance_group``: the group whose gradient variance is tracked
  (the encoder, whose gradient comes from the estimator);
* ``model.training_objective(x, seed, estimator=None, num_samples=None)
  -> (surrogate, estimate)``: scalars; ``grad(surrogate)`` is the ascent
  direction, ``estimate`` the reported training objective. ``estimator`` /
  ``num_samples`` override the model's own (gradient basket, bias check);
* ``model.log_likelihood_bound(x, num_samples, seed) -> [B]``: the
  ``num_samples``-sample importance-weighted bound (1: the ELBO);
* optional: ``model.begin_step(step)``, called in the compiled loop before
  each step's gradients (scheduled estimator options), and
  ``model.scheduled_values() -> {name: variable}``, logged with every
  evaluation.

The pieces: :mod:`.step` (the compiled multi-step function),
:mod:`.evaluation` (the bounds), :mod:`.monitors` (gradient moments, bias
check), :mod:`.outputs` (what the logdir holds), :mod:`.distribute`
(strategies and seeds). This module assembles them and runs the schedule:
calls end at the next progress line, evaluation, checkpoint or epoch
boundary.

Resume: a run restarted with the same ``logdir`` restores the newest intact
checkpoint (models, optimizers, step, moving averages, seed) and drops the
``metrics.jsonl`` rows written after it, so none are duplicated; damaged
newer checkpoints are named in a warning and moved to
``checkpoints/damaged/``; if checkpoints exist but none is intact, the run
stops (:class:`NoIntactCheckpointError`) instead of starting over. A run
holds its logdir's lock (:class:`~experiments.training.outputs.LogdirLock`)
while it trains. Multi-worker: the chief alone locks and writes the logdir;
every worker restores the chief's checkpoint and takes part in every
collective (evaluations, saves: the others save to a temporary folder). Per-step randomness and data order are stateless functions
of (seed, step), so a resumed run writes the rows of an uninterrupted one.
See ``docs/runs.md``.
"""

import dataclasses
import os
import re
import shutil
import time
from typing import Any, Callable, Collection, Dict, Mapping, Optional
from typing import Sequence, Tuple

from absl import logging
import numpy as np
import tensorflow as tf

# The CheckpointManager's own writer of the `checkpoint` state file (to name
# the checkpoint a run fell back to); public only as a deprecated v1 API.
from tensorflow.python.checkpoint import checkpoint_management

from experiments import cli
from experiments.training import distribute
from experiments.training import evaluation
from experiments.training import monitors
from experiments.training import outputs
from experiments.training import step as step_lib

# Independent random streams derived from the run seed.
_TRAIN_STREAM, _PERMUTATION_STREAM, _EVAL_STREAM, _BIAS_STREAM = range(4)
# Checkpoints kept in checkpoints/ (the newest ones).
KEEP_CHECKPOINTS = 3
# Where damaged checkpoints are moved, inside checkpoints/.
DAMAGED_DIR = "damaged"
_CHECKPOINT_NAME = re.compile(r"^ckpt-(\d+)$")


class NoIntactCheckpointError(cli.UserError):
  """The logdir has checkpoints, but none can be read."""


def checkpoint_problem(prefix: str) -> Optional[str]:
  """Why the checkpoint ``prefix`` cannot be read in full; None if it can.

  Reads every tensor, so a missing or short file and a failed checksum all
  show here.
  """
  try:
    reader = tf.train.load_checkpoint(prefix)
    for key in reader.get_variable_to_shape_map():
      reader.get_tensor(key)
  # Damage surfaces through many exception types (tf.errors.OpError
  # subclasses for a missing file or a bad index, IndexError for a short
  # data file, ...): any failure to read means the checkpoint is unusable.
  except Exception as e:  # pylint: disable=broad-except
    return f"{type(e).__name__}: {cli.one_line(e)}"
  return None


def _save_kwargs() -> Dict[str, Any]:
  """Extra arguments of ``CheckpointManager.save``: none, unless the
  "checkpoint" kill point is targeted; then options whose callback runs it
  after the files are written, before the manager records them."""
  target = outputs.kill_target()
  if target is None or target[0] != "checkpoint":
    return {}
  return {"options": tf.train.CheckpointOptions(experimental_write_callbacks=[
      lambda: outputs.kill_point("checkpoint")])}


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
  bias_check: Optional[monitors.BiasCheck] = None

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




class Trainer:
  """Trains a model (see the module docstring for the protocol).

  Args:
    model_fn: builds the model (called under the strategy's scope).
    optimizer_fns: ``{group: () -> keras optimizer}``, one per parameter
      group of the model.
    train_images: float32 ``[N, D]`` grey levels (or 0/1).
    eval_sets: :class:`~experiments.training.evaluation.EvalSet` s
      evaluated every ``eval_every`` steps.
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
               train_images: np.ndarray,
               eval_sets: Sequence[evaluation.EvalSet],
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
    if binarize is None:
      from tf_discrete import datasets  # pylint: disable=g-import-not-at-top
      binarize = datasets.binarize
    base = tf.constant([0, config.seed], tf.int32)
    self._seeds = [distribute.fold_seed(base, s) for s in range(4)]

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
      self.moments = monitors.GradientMoments(
          ["main"] + [name for name, _ in config.basket],
          self.groups[self.model.variance_group], config.ema_decay)

    self.train_step = step_lib.TrainStep(
        self.model, self.groups, self.optimizers, self.moments,
        self.strategy, train_images, config.batch_size, self.step,
        self._seeds[_TRAIN_STREAM], self._seeds[_PERMUTATION_STREAM],
        dynamic=dynamic, binarize=binarize, basket=config.basket,
        jit_compile=config.jit_compile)
    self.evaluator = evaluation.Evaluator(
        self.model, eval_sets, self.strategy, eval_rows=config.eval_rows,
        binarize=binarize, jit_compile=config.jit_compile)
    self.bias_monitor = None
    if config.bias_check is not None:
      self.bias_monitor = monitors.BiasMonitor(
          config.bias_check, self.model, self.groups, self.strategy,
          config.jit_compile)

    self.checkpoint = tf.train.Checkpoint(
        model=self.model, step=self.step, seed=self.seed,
        train_time=self.train_time, moments=self.moments,
        **{f"optimizer_{k}": v for k, v in self.optimizers.items()})
    self.manager = tf.train.CheckpointManager(
        self.checkpoint, os.path.join(config.logdir, outputs.CHECKPOINT_DIR),
        max_to_keep=3)

  @property
  def is_chief(self) -> bool:
    """Whether this process writes the logdir: always, except for the
    non-chief workers of a multi-worker run (they still run every
    collective: evaluations, checkpoint saves)."""
    return distribute.is_chief(self.strategy)

  @property
  def eval_sets(self) -> Sequence[evaluation.EvalSet]:
    return self.evaluator.eval_sets

  def train_steps(self, num_steps: int) -> float:
    """Runs ``num_steps`` training steps in one call (they must not cross
    an epoch boundary: see :meth:`steps_to_next_event`); mean estimate."""
    return float(self.train_step(num_steps))

  def evaluate(self, step: int) -> Dict[str, float]:
    """All evaluation metrics at ``step`` (seeded by the step)."""
    metrics = self.evaluator(
        distribute.fold_seed(self._seeds[_EVAL_STREAM], step))
    metrics.update(self.moments.metrics())
    scheduled = getattr(self.model, "scheduled_values", dict)()
    metrics.update({name: float(value.numpy())
                    for name, value in scheduled.items()})
    if self.bias_monitor is not None:
      metrics.update(self.bias_monitor.metrics(
          distribute.fold_seed(self._seeds[_BIAS_STREAM], step)))
    return metrics

  def steps_to_next_event(self, step: int) -> int:
    """Steps from ``step`` to the next progress line, evaluation,
    checkpoint, epoch boundary or the end: the length of the next call."""
    cfg = self.config
    periods = (cfg.log_every, cfg.eval_every, cfg.checkpoint_every,
               self.train_step.batches_per_epoch)
    return min([cfg.num_steps - step] + [p - step % p for p in periods])

  def _checkpoints(self) -> Dict[int, str]:
    """``{step: prefix}`` of the checkpoints the state file names or whose
    index file exists (a save killed after its files were written but before
    the state file named it left a complete checkpoint)."""
    directory = self.manager.directory
    names = [os.path.basename(p) for p in self.manager.checkpoints]
    if self.manager.latest_checkpoint:
      names.append(os.path.basename(self.manager.latest_checkpoint))
    if tf.io.gfile.isdir(directory):
      names += [os.path.basename(p)[:-len(".index")] for p in
                tf.io.gfile.glob(os.path.join(directory, "ckpt-*.index"))]
    found = {}
    for name in names:
      match = _CHECKPOINT_NAME.match(name)
      if match:
        found[int(match.group(1))] = os.path.join(directory, name)
    return found

  def _restore(self) -> int:
    """Restores the newest intact checkpoint, if any; returns the step.

    Raises:
      ConfigMismatchError: the logdir holds a run with other settings.
      NoIntactCheckpointError: checkpoints exist, none can be read.
    """
    cfg = self.config
    found = self._checkpoints()
    outputs.check_run_config(cfg.logdir, self.run_config,
                             self.resumable_keys, bool(found),
                             write=self.is_chief)
    self.restored_from = None
    if found:
      damaged, chosen = {}, None
      for number in sorted(found, reverse=True):
        problem = checkpoint_problem(found[number])
        if problem is None:
          chosen = number
          break
        damaged[number] = problem
      if chosen is None:
        raise NoIntactCheckpointError(
            f"No intact checkpoint in {self.manager.directory}: "
            f"{self._describe_damage(found, damaged)}. The run stops rather "
            f"than start over: put back an intact checkpoint, or remove "
            f"{cfg.logdir} to start the run afresh.")
      self.restored_from = found[chosen]
      self.checkpoint.restore(self.restored_from).assert_consumed()
      if int(self.seed.numpy()) != cfg.seed:
        raise outputs.ConfigMismatchError(
            f"{cfg.logdir} was written with seed {int(self.seed.numpy())}, "
            f"not {cfg.seed}.")
      if damaged:
        description = self._describe_damage(found, damaged)
        moved_to = (self._move_aside([found[n] for n in damaged])
                    if self.is_chief else None)
        logging.warning(
            "Damaged checkpoints in %s: %s; %s. Resuming from %s, the newest "
            "intact checkpoint.", self.manager.directory, description,
            f"moved to {moved_to}" if moved_to else "left in place",
            os.path.basename(self.restored_from))
      if damaged or self.restored_from != self.manager.latest_checkpoint:
        if self.is_chief:
          self._record_checkpoints(found, chosen)
    if self.is_chief:
      self._remove_unfinished_saves()
    return int(self.step.numpy())

  def _describe_damage(self, found, damaged) -> str:
    parts = []
    for number, problem in damaged.items():
      files = sorted(os.path.basename(p)
                     for p in tf.io.gfile.glob(found[number] + ".*"))
      parts.append(f"{os.path.basename(found[number])} (files "
                   f"{', '.join(files) or 'missing'}: {problem})")
    return "; ".join(parts)

  def _move_aside(self, prefixes) -> Optional[str]:
    """Moves the files of damaged checkpoints to ``checkpoints/damaged/``
    (kept for inspection, out of the way of later restarts)."""
    target = os.path.join(self.manager.directory, DAMAGED_DIR)
    try:
      os.makedirs(target, exist_ok=True)
      for prefix in prefixes:
        for path in tf.io.gfile.glob(prefix + ".*"):
          os.replace(path, os.path.join(target, os.path.basename(path)))
    except OSError as e:
      logging.warning("Could not move damaged checkpoint files to %s: %s",
                      target, e)
      return None
    return target

  def _record_checkpoints(self, found, chosen):
    """Makes the ``checkpoint`` state file (and the manager) name the
    restored checkpoint as the latest, with the intact older ones."""
    directory = self.manager.directory
    kept = [found[n] for n in sorted(found) if n <= chosen
            and tf.io.gfile.exists(found[n] + ".index")][-KEEP_CHECKPOINTS:]
    times = [os.path.getmtime(p + ".index") for p in kept]
    checkpoint_management.update_checkpoint_state_internal(
        save_dir=directory, model_checkpoint_path=found[chosen],
        all_model_checkpoint_paths=kept, save_relative_paths=True,
        all_model_checkpoint_timestamps=times,
        last_preserved_timestamp=min(times) - 1)
    self.manager = tf.train.CheckpointManager(
        self.checkpoint, directory, max_to_keep=KEEP_CHECKPOINTS)

  def _remove_unfinished_saves(self):
    """Removes ``ckpt-N_temp/`` folders: saves killed before completion."""
    for path in tf.io.gfile.glob(
        os.path.join(self.manager.directory, "ckpt-*_temp")):
      logging.info("Removing %s, left by a save that did not finish.", path)
      shutil.rmtree(path, ignore_errors=True)

  def run(self) -> Dict[str, Any]:
    """Trains to ``num_steps`` (resuming if possible); returns the summary.

    Holds the logdir's lock throughout.

    Raises:
      LogdirInUseError: another process holds the logdir.
      ConfigMismatchError: the logdir holds a run with other settings.
      NoIntactCheckpointError: checkpoints exist, none can be read.
      experiments.cli.UserError: an object-store URL as logdir.
    """
    cfg = self.config
    session_start = time.time()
    outputs.kill_target()  # A malformed hook setting fails here.
    if "://" in cfg.logdir:
      raise cli.UserError(
          f"logdir {cfg.logdir}: object-store URLs are not supported (a run "
          f"writes its logdir with local file operations and locks it with "
          f"flock); use a local or mounted path and copy it to the bucket.")
    # Multi-worker: the chief alone writes the logdir and holds its lock.
    if self.is_chief:
      os.makedirs(cfg.logdir, exist_ok=True)
    with outputs.logdir_lock(cfg.logdir, self.is_chief):
      return self._run(session_start)

  def _run(self, session_start: float) -> Dict[str, Any]:
    cfg = self.config
    step = self._restore()
    # Multi-worker: all workers must resume from the chief's checkpoint.
    distribute.check_workers_agree(self.strategy, "the step to resume from",
                                   step)
    metrics_log = outputs.metrics_log(cfg.logdir, self.is_chief)
    # Rows after the checkpoint are recomputed; without a checkpoint, all.
    dropped = metrics_log.truncate(step if step else -1)
    if self.restored_from:
      print(f"Resumed {self.restored_from} at step {step} (dropped {dropped} "
            f"metrics rows written after it).", flush=True)

    # Compile before timing: a zero-step call traces and compiles the loop.
    compile_start = time.time()
    self.train_steps(0)
    compile_time = time.time() - compile_start
    logging.info("Compiled the training step in %.1f s.", compile_time)

    objective_name = getattr(self.model, "objective_name", "objective")
    since_log, since_eval, session = _Meter(), _Meter(), _Meter()
    eval_time = None
    if step == 0:
      eval_time = self._evaluate_and_log(metrics_log, 0, since_eval)
    while step < cfg.num_steps:
      n = self.steps_to_next_event(step)
      start = time.perf_counter()
      estimate = self.train_steps(n)
      elapsed = time.perf_counter() - start
      outputs.kill_point("train")
      step += n
      self.train_time.assign_add(elapsed)
      for meter in (since_log, since_eval, session):
        meter.add(n, elapsed, estimate)
      done = step == cfg.num_steps
      if step % cfg.log_every == 0 or done:
        print(f"step {step}/{cfg.num_steps}  "
              f"{since_log.steps_per_sec:.1f} steps/s "
              f"({1e3 / since_log.steps_per_sec:.3f} ms/step)  train "
              f"{objective_name} {since_log.mean_estimate:.3f}", flush=True)
        since_log = _Meter()
      if step % cfg.eval_every == 0 or done:
        eval_time = self._evaluate_and_log(metrics_log, step, since_eval)
        since_eval = _Meter()
      if step % cfg.checkpoint_every == 0 or done:
        outputs.save_checkpoint(
            self.manager, self.checkpoint, step, chief=self.is_chief,
            task=distribute.task_name(self.strategy), keep=KEEP_CHECKPOINTS,
            **_save_kwargs())

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
    if self.is_chief:
      outputs.write_json(os.path.join(cfg.logdir, outputs.SUMMARY_FILE),
                         summary)
      outputs.plot_curves(rows,
                          os.path.join(cfg.logdir, outputs.CURVES_FILE))
    final = "  ".join(f"{k} {summary[k]:.4g}" for k in
                      ("train_elbo", "valid_iwae", "test_iwae", "grad_variance")
                      if isinstance(summary.get(k), float))
    where = (f"outputs in {cfg.logdir}: {outputs.METRICS_FILE}, "
             f"{outputs.SUMMARY_FILE}, {outputs.CURVES_FILE}, "
             f"{outputs.CHECKPOINT_DIR}/, TensorBoard events"
             if self.is_chief else
             f"{distribute.task_name(self.strategy)} is not the chief: the "
             f"chief writes the outputs in {cfg.logdir}")
    print(f"done: {step} steps, {summary['ms_per_step'] or 0:.2f} ms/step"
          f"{'  ' + final if final else ''}\n{where}", flush=True)
    return summary

  def _evaluate_and_log(self, metrics_log, step, since_eval):
    start = time.perf_counter()
    metrics = self.evaluate(step)
    eval_time = time.perf_counter() - start
    outputs.kill_point("eval")
    row = {"step": step, "wall_time": time.time(), **metrics,
           "eval_time_sec": eval_time,
           "train_time_sec": float(self.train_time.numpy())}
    if since_eval.steps:
      row["train_objective"] = since_eval.mean_estimate
      row["steps_per_sec"] = since_eval.steps_per_sec
    metrics_log.write(row)
    print(f"step {step}  " + "  ".join(
        f"{k} {v:.4g}" for k, v in metrics.items()), flush=True)
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
