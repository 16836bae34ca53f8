"""``tf.distribute`` plumbing of the training loop: strategies, replica ids,
per-replica XLA, and stateless seeds folded with step and replica."""

from typing import Optional

import tensorflow as tf

STRATEGIES = ("default", "mirrored", "tpu")


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
  outside.
  """
  default = not tf.distribute.has_strategy() and (
      strategy is tf.distribute.get_strategy())
  is_tpu = isinstance(strategy, tf.distribute.TPUStrategy)
  outer_jit = jit_compile if default else None
  inner = (per_replica_jit if jit_compile and not default and not is_tpu
           else lambda fn: fn)
  return outer_jit, inner
