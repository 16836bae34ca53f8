"""A distributed training step, checked by value.

One step of the Bernoulli VAE binary's trainer under ``MirroredStrategy``
with 2 replicas (two logical CPUs, in a subprocess because the device
split must happen before TensorFlow starts) must equal the step computed
directly, without any strategy, from each replica's gradient: its share of
the global batch (batch offset), its own seed (folded with the replica
index), scaled by 1/replicas and summed. SGD, not Adam: Adam's first step
is blind to a constant factor, SGD's is not. The gradient moments of the
variance monitor must hold the same summed gradient.
"""

import json
import subprocess
import sys

from tests import support

SCRIPT = r"""
import json, sys
import numpy as np
import tensorflow as tf
import keras
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from experiments import bernoulli_vae, vae_common
from experiments.training import distribute
from tf_discrete import _core, datasets

LR = 0.5
vae_common.optimizer_fns = lambda values, control_variate=False: {
    g: (lambda: keras.optimizers.SGD(LR))
    for g in ("encoder", "decoder", "prior")
    + (("control_variate",) if control_variate else ())}


def trainer(strategy, logdir, estimator):
  values = bernoulli_vae.default_flag_values()
  values.update(dataset="synthetic", batch_size=8, num_steps=1,
                strategy=strategy, logdir=logdir, num_eval_samples=2,
                grad_type=estimator, encoder_type="nonlinear")
  return bernoulli_vae.build_trainer(values)


out = {}
for estimator in ("disarm", "rloo"):
  mirrored = trainer("mirrored", sys.argv[1] + estimator + "m", estimator)
  direct = trainer("default", sys.argv[1] + estimator + "d", estimator)
  assert mirrored.strategy.num_replicas_in_sync == 2
  groups = direct.groups
  names = sorted(groups)
  before = {g: [v.numpy() for v in groups[g]] for g in names}
  same_init = all(np.array_equal(a, b.numpy()) for g in names
                  for a, b in zip(before[g], mirrored.groups[g]))

  mirrored.train_steps(1)

  # The reference, written out here rather than through the step's own
  # per-replica code: replica r takes rows [4r, 4r + 4) of the epoch's
  # order, draws from the run seed folded with the step and r, and its share
  # of the global-batch mean is 1/2 of its local-batch gradient.
  train = direct.train_step
  order = train.permutation(0)
  model = direct.model

  def replica_gradient(replica):
    seed = distribute.fold_seed(train.train_seed, 0, replica)
    data_seed, model_seed = _core.split_seed(seed, 2)
    x = datasets.binarize(
        tf.gather(train.train_images, order[4 * replica:4 * replica + 4]),
        data_seed)
    with tf.GradientTape() as tape:
      loss = -model.training_objective(x, model_seed)[0]
    grads = tape.gradient(loss, {g: groups[g] for g in names},
                          unconnected_gradients="zero")
    return {g: [v / 2 for v in grads[g]] for g in names}

  summed = {g: [np.zeros_like(w) for w in before[g]] for g in names}
  for replica in range(2):
    # Compiled like the replicas of the mirrored step (XLA's stateless
    # fold-in differs from the eager kernel's).
    grads = tf.function(lambda r=replica: replica_gradient(r),
                        jit_compile=True)()
    for g in names:
      for total, grad in zip(summed[g], grads[g]):
        total += grad.numpy()
  err = 0.0
  scale = 0.0
  for g in names:
    for w, grad, v in zip(before[g], summed[g], mirrored.groups[g]):
      expected = w - LR * grad
      err = max(err, float(np.max(np.abs(v.numpy() - expected))))
      scale = max(scale, float(np.max(np.abs(LR * grad))))
  group = direct.model.variance_group
  decay = mirrored.moments.decay
  moment_err = max(
      float(np.max(np.abs(m.numpy() - (1 - decay) * grad)))
      for m, grad in zip(mirrored.moments.first["main"], summed[group]))
  moment_scale = max(float(np.max(np.abs((1 - decay) * grad)))
                     for grad in summed[group])
  out[estimator] = dict(same_init=same_init, err=err, scale=scale,
                        moment_err=moment_err, moment_scale=moment_scale)
print("RESULT", json.dumps(out))
"""


def test_mirrored_step_equals_the_sum_of_per_replica_gradients(tmp_path):
  result = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path) + "/"],
                          cwd=support.ROOT, env=support.ENV,
                          capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-4000:]
  out = json.loads(result.stdout.split("RESULT", 1)[1])
  for estimator, r in out.items():
    assert r["same_init"], estimator
    # The update is not negligible, and matches to float32 rounding.
    assert r["scale"] > 1e-3, (estimator, r)
    assert r["err"] < 1e-4 * max(1.0, r["scale"]) + 1e-6, (estimator, r)
    assert r["moment_scale"] > 1e-6, (estimator, r)
    assert r["moment_err"] < 1e-4 * r["moment_scale"] + 1e-9, (estimator, r)
