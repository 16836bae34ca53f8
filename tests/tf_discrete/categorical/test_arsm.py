"""ARS+/ARSM+: the interval of reference-coordinate values consistent with
the observed pseudo-actions (the Rao-Blackwellization's conditioning)."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from tf_discrete import categorical
from tf_discrete.categorical import arsm as arsm_lib


def test_reference_interval_contains_true_pi():
  """The interval of consistent pi_j values brackets the drawn pi_j."""
  for name in ("ars_plus", "arsm_plus"):
    est = categorical.get(name)
    logits = tf.constant(np.random.RandomState(3).randn(500, 2, 5) * 2,
                         tf.float32)
    noise = est.sample(logits, None, tf.constant([1, 2])).noise
    assert isinstance(noise, arsm_lib.SwapNoise)
    ref_j, ref_l = noise.ref_j, noise.ref_l  # [J, *batch, V]
    lower, upper = arsm_lib.reference_interval(
        noise.log_pi, logits, noise.pseudo_log_pi, noise.actions,
        noise.swap_a, noise.swap_b, ref_j, ref_l)
    pi = np.moveaxis(np.exp(noise.log_pi.numpy()), -1, 0)[None]
    pi_j = np.take_along_axis(pi, ref_j.numpy()[:, None], 1)[:, 0]
    pi_l = np.take_along_axis(pi, ref_l.numpy()[:, None], 1)[:, 0]
    lower, upper = lower.numpy(), upper.numpy()
    assert np.all(lower >= 0) and np.all(upper <= pi_j + pi_l + 1e-6)
    assert np.all(lower <= pi_j * (1 + 1e-5) + 1e-7), name
    assert np.all(upper >= pi_j * (1 - 1e-5) - 1e-7), name
    # Informative: strictly inside [0, r] for a good share of draws.
    assert np.mean(upper - lower) < 0.8 * np.mean(pi_j + pi_l)


@pytest.mark.parametrize("name,c", [("ars_plus", 2), ("ars_plus", 5),
                                    ("arsm_plus", 3), ("arsm_plus", 5)])
def test_reference_interval_matches_a_sweep_of_pi_j(name, c):
  """[lower, upper] is exactly where every pseudo-action stays unchanged.

  Brute force in NumPy: move pi_j over a grid of [0, r] (pi_l = r - pi_j,
  the rest fixed), redo every swap's race, and keep the grid points whose
  pseudo-actions all match the observed ones.
  """
  est = categorical.get(name)
  batch, num_vars, grid = 40, 2, 4001
  logits = tf.constant(np.random.RandomState(c).randn(batch, num_vars, c) * 2,
                       tf.float32)
  noise = est.sample(logits, None, tf.constant([4, c])).noise
  ref_j, ref_l = noise.ref_j, noise.ref_l  # [J, *batch, V]
  lower, upper = (x.numpy() for x in noise.reference_interval(logits))
  noise = {f.name: getattr(noise, f.name).numpy()
           for f in dataclasses.fields(noise)}
  ref_j, ref_l = ref_j.numpy(), ref_l.numpy()
  theta = logits.numpy().astype(np.float64)
  pi = np.exp(noise["log_pi"].astype(np.float64))
  shape = noise["actions"].shape
  swap_a = np.broadcast_to(noise["swap_a"], shape)
  swap_b = np.broadcast_to(noise["swap_b"], shape)
  cols = np.arange(c)
  for (k, b, v), lo in np.ndenumerate(lower):
    j, l = ref_j[k, b, v], ref_l[k, b, v]
    r = pi[b, v, j] + pi[b, v, l]
    t = np.linspace(0.0, r, grid)
    moved = np.tile(pi[b, v], [grid, 1])
    moved[:, j], moved[:, l] = t, r - t
    consistent = np.ones(grid, bool)
    for s in range(shape[0]):
      perm = cols.copy()
      perm[[swap_a[s, b, v], swap_b[s, b, v]]] = perm[[swap_b[s, b, v],
                                                       swap_a[s, b, v]]]
      race = np.log(np.maximum(moved[:, perm], 1e-300)) - theta[b, v]
      consistent &= np.argmin(race, -1) == noise["actions"][s, b, v]
    inside = t[consistent]
    assert inside.size, (k, b, v)  # The drawn pi_j is always consistent.
    step = r / (grid - 1)
    np.testing.assert_allclose(lo, inside.min(), atol=1.01 * step + 1e-6)
    np.testing.assert_allclose(upper[k, b, v], inside.max(),
                               atol=1.01 * step + 1e-6)
