"""``tf.distribute`` plumbing of the training loop: strategies, replica ids,
per-replica XLA, and stateless seeds folded with step and replica.

Multi-worker (``MultiWorkerMirroredStrategy``, strategy "multi_worker"): the
cluster comes from ``$TF_CONFIG`` (:func:`cluster_config`); replica ids are
global in the sync group (worker ``w`` with ``L`` local devices holds
replicas ``w*L .. w*L+L-1``), so a replica draws the same batch share and
seeds as the replica of that id under ``MirroredStrategy``. The chief
(:func:`is_chief`) alone writes the logdir; every worker runs every
collective.
"""

import json
import os
from typing import Any, Dict, Optional

import tensorflow as tf

from experiments import cli

STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")
#: The environment variable that describes a multi-worker cluster.
TF_CONFIG_ENV = "TF_CONFIG"
# Task types a multi-worker training task may have (TF_CONFIG "type").
_WORKER_TYPES = ("chief", "worker")


class ClusterConfigError(cli.UserError, ValueError):
  """``$TF_CONFIG`` is missing or does not describe a multi-worker task."""


def cluster_config(environ: Optional[Dict[str, str]] = None
                   ) -> Dict[str, Any]:
  """The parsed ``$TF_CONFIG`` of a multi-worker task, checked.

  Expected: ``{"cluster": {"chief": ["host:port"], "worker": ["host:port",
  ...]}, "task": {"type": "chief" | "worker", "index": i}}`` ("chief"
  optional: without it worker 0 is the chief).

  Raises:
    ClusterConfigError: unset, not JSON, or not such a description.
  """
  environ = os.environ if environ is None else environ
  text = environ.get(TF_CONFIG_ENV, "")
  example = ('e.g. TF_CONFIG=\'{"cluster": {"worker": ["host1:2222", '
             '"host2:2222"]}, "task": {"type": "worker", "index": 0}}\'')
  if not text.strip():
    raise ClusterConfigError(
        f"--strategy=multi_worker needs ${TF_CONFIG_ENV}, the cluster and "
        f"this process's task, {example} (see docs/experiments.md).")
  try:
    config = json.loads(text)
  except ValueError as e:
    raise ClusterConfigError(
        f"${TF_CONFIG_ENV} is not JSON ({e}); expected {example}.") from None

  def bad(what):
    return ClusterConfigError(f"${TF_CONFIG_ENV}={text!r}: {what}; "
                              f"expected {example}.")

  if not isinstance(config, dict):
    raise bad("not a JSON object")
  cluster, task = config.get("cluster"), config.get("task")
  if not isinstance(cluster, dict) or not cluster:
    raise bad('no "cluster" object')
  others = sorted(set(cluster) - set(_WORKER_TYPES))
  if others:
    raise bad(f"task types {others} in the cluster; multi-worker training "
              f"has only {list(_WORKER_TYPES)}")
  for job, addresses in cluster.items():
    if (not isinstance(addresses, list) or not addresses or not all(
        isinstance(a, str) and a.rpartition(":")[2].isdigit()
        for a in addresses)):
      raise bad(f'cluster "{job}" is not a list of "host:port" addresses')
  if len(cluster.get("chief", [])) > 1:
    raise bad("more than one chief")
  if not isinstance(task, dict):
    raise bad('no "task" object')
  task_type, index = task.get("type"), task.get("index")
  if task_type not in cluster:
    raise bad(f'task type {task_type!r} is not a job of the cluster '
              f'{sorted(cluster)}')
  if (isinstance(index, bool) or not isinstance(index, int) or
      not 0 <= index < len(cluster[task_type])):
    raise bad(f'task index {index!r} is not in [0, '
              f'{len(cluster[task_type])}) for "{task_type}"')
  return config


def make_strategy(name: str = "default", tpu: Optional[str] = None):
  """Builds a ``tf.distribute`` strategy by name.

  Args:
    name: "default" (no distribution), "mirrored" (all GPUs, else all
      logical CPU devices), "multi_worker" (``MultiWorkerMirroredStrategy``
      over the cluster of ``$TF_CONFIG``: all GPUs of each worker, else one
      CPU device per worker) or "tpu".
    tpu: TPU address for ``TPUClusterResolver`` (strategy "tpu" only; empty
      or None: the local TPU VM).

  Raises:
    ClusterConfigError: "multi_worker" without a valid ``$TF_CONFIG``.
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
  if name == "multi_worker":
    cluster_config()  # A clear error before TensorFlow reads it.
    return tf.distribute.MultiWorkerMirroredStrategy(
        cluster_resolver=(
            tf.distribute.cluster_resolver.TFConfigClusterResolver()))
  resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or "")
  tf.config.experimental_connect_to_cluster(resolver)
  tf.tpu.experimental.initialize_tpu_system(resolver)
  return tf.distribute.TPUStrategy(resolver)


def is_multi_worker(strategy) -> bool:
  return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def is_chief(strategy) -> bool:
  """Whether this process writes the run's outputs: always, but under
  multi-worker training only the chief (task "chief", else worker 0)."""
  return bool(strategy.extended.should_checkpoint)


def task_name(strategy) -> str:
  """``<type>:<index>`` of this multi-worker task; "" otherwise."""
  if not is_multi_worker(strategy):
    return ""
  resolver = strategy.cluster_resolver
  return f"{resolver.task_type}:{resolver.task_id}"


def check_workers_agree(strategy, what: str, value: int):
  """Raises ClusterConfigError, on every worker, unless all workers hold
  the same ``value`` (e.g. the step they resumed from); a no-op without
  multi-worker training. The check is a collective: all workers call it."""
  if not is_multi_worker(strategy):
    return
  local = tf.constant([value], tf.int64)
  values = tf.function(lambda: strategy.gather(
      strategy.run(lambda: tf.identity(local)), axis=0))().numpy()
  if len(set(values.tolist())) > 1:
    local_replicas = len(strategy.extended.worker_devices)
    per_worker = values[::local_replicas].tolist()
    raise ClusterConfigError(
        f"The workers disagree on {what}: {per_worker} (by worker). Every "
        f"worker must see the chief's logdir (a shared filesystem) to "
        f"resume from its checkpoints, and run with the same flags.")


def fold_seed(seed, *data):
  """Folds integers (step, replica, ...) into a stateless int32 seed."""
  for d in data:
    # int32 data keeps the seed int32: an int64 seed makes XLA treat it as
    # a compile-time constant, i.e. one compilation per step value.
    seed = tf.random.experimental.stateless_fold_in(seed, tf.cast(d, tf.int32))
  return seed


def replica_id():
  return tf.distribute.get_replica_context().replica_id_in_sync_group


def per_replica_jit(fn):
  """``fn`` XLA-compiled, traced separately for each replica.

  A function traced once would capture the first replica's copies of the
  mirrored variables, which an XLA program on another device cannot read.
  """
  compiled = {}

  def call(*args):
    replica = int(tf.get_static_value(replica_id()))
    if replica not in compiled:
      compiled[replica] = tf.function(fn, jit_compile=True)
    return compiled[replica](*args)

  return call


def compilers(strategy, jit_compile: bool):
  """``(outer_jit, inner)`` for a strategy.

  Without distribution the whole multi-step loop is one XLA program
  (``outer_jit``). Under a strategy, XLA compiles the per-replica
  computations (``inner`` wraps them; the TPU compiles everything
  regardless); the loop, the all-reduces and the optimizer updates stay
  outside. ``MultiWorkerMirroredStrategy`` is compiled like
  ``MirroredStrategy`` (its collectives stay outside XLA; tested on CPU).
  """
  default = not tf.distribute.has_strategy() and (
      strategy is tf.distribute.get_strategy())
  is_tpu = isinstance(strategy, tf.distribute.TPUStrategy)
  outer_jit = jit_compile if default else None
  inner = (per_replica_jit if jit_compile and not default and not is_tpu
           else lambda fn: fn)
  return outer_jit, inner
