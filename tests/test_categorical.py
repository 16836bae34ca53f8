"""Categorical estimators against exact enumerated gradients and the contract."""

import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_discrete import categorical
from tf_discrete import diagnostics
from tf_discrete import layers
from tf_discrete.categorical import arsm as arsm_lib
from tf_discrete.categorical import coupled

NAMES = ["reinforce", "rloo", "ar", "ars", "arsm", "ars_plus", "arsm_plus",
         "disarm_sb", "disarm_tree", "disarm_iw"]
NUM_RUNS = 20000

# V = 2 variables; magnitudes up to 4 so rare categories matter.
LOGITS = {
    2: np.array([[0.5, -1.0], [-4.0, 1.5]], np.float32),
    3: np.array([[0.5, -1.0, 4.0], [-4.0, 1.5, 0.0]], np.float32),
    4: np.array([[0.5, -1.0, 4.0, -4.0], [-4.0, 1.5, 0.0, 3.0]], np.float32),
}
_RS = np.random.RandomState(0)
_W = (0.7 * _RS.randn(4, 4)).astype(np.float32)
_A0 = np.array([1.0, -0.5, 0.3, 0.8], np.float32)
_A1 = np.array([-0.7, 0.4, 1.1, -0.2], np.float32)


def objective(z):
  """Non-linear, couples the two variables; |f| < 4 on every state."""
  c = z.shape[-1]
  z0, z1 = z[..., 0, :], z[..., 1, :]
  return (tf.reduce_sum(z0 * _A0[:c], -1) + tf.reduce_sum(z1 * _A1[:c], -1)
          + tf.einsum("...i,ij,...j->...", z0, _W[:c, :c], z1)
          + tf.sin(2.0 * tf.reduce_sum(z0 * z1 * np.arange(c, dtype=np.float32),
                                       -1)))


def _cases():
  for c in (2, 3, 4):
    for name in NAMES:
      if name == "disarm_tree" and c == 3:
        continue
      yield name, c


def _assert_unbiased(stats):
  assert np.all(np.abs(stats.grad_z) < 4), (stats.grad_z, stats.grad_mean,
                                            stats.exact_grad)
  assert np.all(np.abs(stats.value_z) < 4), stats.value_z


def test_available_lists_the_contract_names():
  assert categorical.available() == sorted(NAMES)


def test_objective_bounded():
  states = categorical.FAMILY.enumerate_states([2, 4])
  assert states.shape == (16, 2, 4)
  assert np.max(np.abs(objective(states).numpy())) < 4


@pytest.mark.parametrize("name,c", list(_cases()))
def test_unbiased_against_enumeration(name, c):
  stats = diagnostics.estimator_stats(
      objective, LOGITS[c], name, family="categorical", num_runs=NUM_RUNS,
      seed=7)
  _assert_unbiased(stats)


@pytest.mark.parametrize("name,num_samples,options", [
    ("rloo", 3, {}),
    ("reinforce", 4, {}),
    ("ar", 3, {}),
    ("disarm_sb", 4, {}),
    ("disarm_sb", None, {"logits_order": "ascending"}),
    ("disarm_sb", None, {"logits_order": "descending"}),
    ("disarm_sb", None, {"logits_order": "abs"}),
    ("disarm_tree", 4, {}),
    ("disarm_iw", 4, {}),
    ("ars_plus", None, {"symmetry_mask": False}),
    ("arsm_plus", None, {"symmetry_mask": False}),
])
def test_unbiased_with_options(name, num_samples, options):
  stats = diagnostics.estimator_stats(
      objective, LOGITS[4], name, family="categorical", num_runs=NUM_RUNS,
      num_samples=num_samples, seed=11, **options)
  _assert_unbiased(stats)


def test_exact_value_and_gradient_match_closed_form():
  """Enumeration for f = sum_v <a_v, z_v>: E f = sum_v <a_v, softmax>."""
  logits = tf.constant(LOGITS[3])
  a = tf.constant([[1.0, 2.0, -1.0], [0.5, 0.0, 3.0]])
  fn = lambda z: tf.reduce_sum(z * a, [-2, -1])
  value, grad = diagnostics.exact_value_and_gradient(fn, logits,
                                                     "categorical")
  p = tf.nn.softmax(logits)
  np.testing.assert_allclose(value, tf.reduce_sum(p * a), rtol=1e-5)
  expected = p * (a - tf.reduce_sum(p * a, -1, keepdims=True))
  np.testing.assert_allclose(grad, expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("plus,plain", [("ars_plus", "ars"),
                                        ("arsm_plus", "arsm")])
def test_rao_blackwellization_has_zero_mean_difference(plus, plain):
  """Same draws: (plus - plain) has mean zero (sharper than the z-test)."""
  runs = 40000
  logits = tf.broadcast_to(
      np.array([[1.0, -0.5, 0.3, 0.0], [0.2, 0.1, -0.3, 0.4]], np.float32),
      [runs, 2, 4])
  grads = []
  for name in (plus, plain):
    with tf.GradientTape() as tape:
      tape.watch(logits)
      total = tf.reduce_sum(categorical.estimate(objective, logits, name,
                                                 seed=5))
    grads.append(tape.gradient(total, logits).numpy())
  diff = grads[0] - grads[1]
  z = diff.mean(0) / (diff.std(0) / np.sqrt(runs))
  assert np.all(np.abs(z) < 4), z
  assert np.mean(np.abs(diff)) > 0  # The two really differ.


def test_reference_interval_contains_true_pi():
  """The interval of consistent pi_j values brackets the drawn pi_j."""
  for name in ("ars_plus", "arsm_plus"):
    est = categorical.get(name)
    logits = tf.constant(np.random.RandomState(3).randn(500, 2, 5) * 2,
                         tf.float32)
    noise = est.sample(logits, None, tf.constant([1, 2])).noise
    ref_j, ref_l = noise["ref_j"], noise["ref_l"]
    if name == "ars_plus":
      ref_j, ref_l = ref_j[tf.newaxis], ref_l[tf.newaxis]
    lower, upper = arsm_lib.reference_interval(
        noise["log_pi"], logits, noise["pseudo_log_pi"], noise["actions"],
        noise["swap_a"], noise["swap_b"], ref_j, ref_l)
    pi = np.moveaxis(np.exp(noise["log_pi"].numpy()), -1, 0)[None]
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
  ref_j, ref_l = noise["ref_j"], noise["ref_l"]
  if name == "ars_plus":
    ref_j, ref_l = ref_j[tf.newaxis], ref_l[tf.newaxis]
  lower, upper = (x.numpy() for x in arsm_lib.reference_interval(
      noise["log_pi"], logits, noise["pseudo_log_pi"], noise["actions"],
      noise["swap_a"], noise["swap_b"], ref_j, ref_l))
  noise = {k: v.numpy() for k, v in noise.items()}
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


def test_disarm_iw_needs_ascending_order():
  """Unsorted, the antithetic coupling misses pairs: a visible bias."""
  logits = np.array([[1.0, -0.5, 0.3, 0.0], [0.2, 0.1, -0.3, 0.4]],
                    np.float32)
  stats = diagnostics.estimator_stats(
      objective, logits, "disarm_iw", family="categorical", num_runs=NUM_RUNS,
      seed=3, logits_order="none")
  assert np.max(np.abs(stats.grad_z)) > 6, stats.grad_z


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_unbiased_many_runs(name):
  """Same check with 10x the runs on a second problem (slow)."""
  logits = np.array([[1.0, -0.5, 0.3, 0.0], [0.2, 0.1, -0.3, 0.4]],
                    np.float32)
  stats = diagnostics.estimator_stats(
      objective, logits, name, family="categorical", num_runs=200000, seed=21)
  _assert_unbiased(stats)


# ---------------------------------------------------------------------------
# Cost and variance.
# ---------------------------------------------------------------------------


def _expected_evaluations(name, c):
  return {"reinforce": 1, "rloo": c, "ar": 1, "ars": c, "ars_plus": c,
          "arsm": c * (c - 1) // 2 + 1, "arsm_plus": c * (c - 1) // 2 + 1,
          "disarm_sb": 2, "disarm_tree": 2, "disarm_iw": 2}[name]


@pytest.mark.parametrize(
    "name,c", [(n, c) for n in NAMES for c in (3, 4, 8)
               if not (n == "disarm_tree" and c == 3)])  # Tree: C = 2^k.
def test_evaluation_counts(name, c):
  seen = []

  def counting(z):
    seen.append(z.shape)
    return tf.reduce_sum(z[..., 0], [-1])

  logits = tf.zeros([5, 2, c])
  value = categorical.estimate(counting, logits, name, seed=0)
  expected = _expected_evaluations(name, c)
  assert seen == [tf.TensorShape([expected, 5, 2, c])]  # One batched call.
  assert value.shape == (5,)
  assert categorical.get(name).evaluations(None, [2, c]) == expected


def _mean_grad_var(name, **options):
  logits = np.array([[1.0, -0.5, 0.3, 0.0], [0.2, 0.1, -0.3, 0.4]],
                    np.float32)
  return diagnostics.estimator_stats(
      objective, logits, name, family="categorical", num_runs=NUM_RUNS,
      seed=5, **options)


@pytest.mark.parametrize("plus,plain", [("ars_plus", "ars"),
                                        ("arsm_plus", "arsm")])
def test_rao_blackwellized_variance_not_larger(plus, plain):
  var_plain = _mean_grad_var(plain).grad_var
  var_unmasked = _mean_grad_var(plus, symmetry_mask=False).grad_var
  var_plus = _mean_grad_var(plus).grad_var
  # Same draws, so the orderings hold per coordinate up to sampling noise of
  # the variance estimates themselves; compare the means strictly.
  assert np.mean(var_plus) <= np.mean(var_unmasked) <= np.mean(var_plain)
  assert np.all(var_plus <= var_plain * 1.02)


def test_rloo_variance_below_reinforce():
  assert (_mean_grad_var("rloo", num_samples=4).mean_grad_var <
          _mean_grad_var("reinforce", num_samples=4).mean_grad_var)


def test_symmetry_mask_is_exact_for_one_variable():
  """V = 1: a variable whose pseudo-actions agree already has zero gradient."""
  logits = tf.constant(np.random.RandomState(2).randn(300, 1, 4) * 3,
                       tf.float32)
  fn = lambda z: tf.reduce_sum(z * [1.0, -2.0, 0.5, 3.0], [-2, -1])
  for name in ("ars_plus", "arsm_plus"):
    grads = []
    for mask in (True, False):
      with tf.GradientTape() as tape:
        tape.watch(logits)
        total = tf.reduce_sum(categorical.estimate(
            fn, logits, name, seed=4, symmetry_mask=mask))
      grads.append(tape.gradient(total, logits).numpy())
    np.testing.assert_allclose(grads[0], grads[1], atol=1e-6)


# ---------------------------------------------------------------------------
# Bad inputs.
# ---------------------------------------------------------------------------


def test_unknown_estimator_lists_available():
  with pytest.raises(ValueError, match="`estimator`.*available: ar, ars"):
    categorical.estimate(objective, LOGITS[3], "arsmm")


def test_logits_rank_checked():
  with pytest.raises(ValueError, match=r"`logits`.*\[\*batch, V, C\]"):
    categorical.estimate(objective, tf.zeros([3]), "rloo")


def test_integer_logits_rejected():
  with pytest.raises(TypeError, match="`logits`.*floating"):
    categorical.estimate(objective, tf.zeros([2, 3], tf.int32), "rloo")


def test_single_category_rejected():
  with pytest.raises(ValueError, match="`logits`.*at least 2 categories"):
    categorical.estimate(objective, tf.zeros([2, 1]), "rloo")


def test_objective_output_shape_checked():
  with pytest.raises(ValueError, match="`objective`.*shape"):
    categorical.estimate(lambda z: tf.reduce_sum(z, -1), LOGITS[3], "arsm")


@pytest.mark.parametrize("name,num_samples,message", [
    ("arsm", 9, "fixed at 4"),
    ("arsm_plus", 3, "fixed at 4"),
    ("ars", 4, "fixed at 3"),
    ("ars_plus", 2, "fixed at 3"),
    ("rloo", 1, "at least 2"),
    ("reinforce", 0, "at least 1"),
    ("ar", 0, "at least 1"),
    ("disarm_sb", 3, "even"),
    ("disarm_iw", 1, "at least 2"),
])
def test_invalid_num_samples(name, num_samples, message):
  with pytest.raises(ValueError, match=f"`num_samples`.*{message}"):
    categorical.estimate(objective, LOGITS[3], name, num_samples=num_samples)


def test_fixed_cost_accepts_its_own_count():
  categorical.estimate(objective, LOGITS[3], "arsm", num_samples=4, seed=0)
  categorical.estimate(objective, LOGITS[3], "ars", num_samples=3, seed=0)


@pytest.mark.parametrize("num_samples", [2.0, True, "2"])
def test_non_integer_num_samples_rejected(num_samples):
  with pytest.raises(TypeError, match="`num_samples`"):
    categorical.estimate(objective, LOGITS[3], "rloo",
                         num_samples=num_samples)


@pytest.mark.parametrize("c", [3, 6])
def test_disarm_tree_needs_power_of_two(c):
  with pytest.raises(ValueError, match="power of 2.*`logits`|`logits`.*power"):
    categorical.estimate(objective, tf.zeros([2, c]), "disarm_tree")


@pytest.mark.parametrize("name", ["disarm_sb", "disarm_iw"])
@pytest.mark.parametrize("order", ["random", "ASCENDING", 1])
def test_bad_logits_order(name, order):
  with pytest.raises(ValueError, match="`logits_order`.*'ascending'"):
    categorical.estimate(objective, LOGITS[3], name, logits_order=order)


@pytest.mark.parametrize("name", ["rloo", "arsm", "disarm_tree"])
def test_unknown_option_rejected(name):
  with pytest.raises(TypeError, match="options"):
    categorical.estimate(objective, LOGITS[4], name, logits_order="abs")


def test_unknown_option_for_optioned_estimators():
  with pytest.raises(TypeError, match="logits_order"):
    categorical.estimate(objective, LOGITS[3], "disarm_sb", temperature=1.0)
  with pytest.raises(TypeError, match="symmetry_mask"):
    categorical.estimate(objective, LOGITS[3], "ars_plus", order="abs")
  with pytest.raises(TypeError, match="`symmetry_mask`"):
    categorical.estimate(objective, LOGITS[3], "arsm_plus",
                         symmetry_mask="yes")


def test_non_callable_objective_rejected():
  with pytest.raises(TypeError, match="`objective`"):
    categorical.estimate("f", LOGITS[3], "rloo")


# ---------------------------------------------------------------------------
# Numerics, seeds, dtypes.
# ---------------------------------------------------------------------------


EXTREME = np.array([[[1e4, -1e4, 0.0, 3e3], [-2e3, 1e4, -1e4, 0.0]],
                    [[-1e4, -1e4, -1e4, -1e4], [1e4, 1e4, -1e4, 5.0]]],
                   np.float32)


def _option_variants():
  for name in NAMES:
    yield name, {}
  for order in ("ascending", "descending", "abs", "none"):
    yield "disarm_sb", {"logits_order": order}
    yield "disarm_iw", {"logits_order": order}


@pytest.mark.parametrize("name,options", list(_option_variants()))
def test_extreme_logits_are_finite(name, options):
  logits = tf.constant(EXTREME)

  def elbo_like(z):
    # -log q(z) with |logits| ~ 1e4: finite only in log-softmax form.
    log_q = tf.reduce_sum(z * tf.nn.log_softmax(logits), [-2, -1])
    return objective(z) - log_q

  with tf.GradientTape() as tape:
    tape.watch(logits)
    value = categorical.estimate(elbo_like, logits, name, seed=3, **options)
    total = tf.reduce_sum(value)
  grad = tape.gradient(total, logits)
  assert np.all(np.isfinite(value.numpy())), value
  assert np.all(np.isfinite(grad.numpy())), grad


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_result_eager_function_xla(name):
  logits = tf.constant(np.random.RandomState(1).randn(3, 2, 4) * 2,
                       tf.float32)
  # Ties (as at initialization) must sort identically everywhere.
  logits = tf.concat([logits, tf.zeros([1, 2, 4])], 0)
  seed = tf.constant([4, 2])
  options = {"logits_order": "descending"} if name == "disarm_sb" else {}

  def run(logits, seed):
    with tf.GradientTape() as tape:
      tape.watch(logits)
      value = categorical.estimate(objective, logits, name, seed=seed,
                                   **options)
      total = tf.reduce_sum(value)
    return value, tape.gradient(total, logits)

  eager = run(logits, seed)
  graph = tf.function(run)(logits, seed)
  xla = tf.function(run, jit_compile=True)(logits, seed)
  for other in (graph, xla):
    np.testing.assert_allclose(eager[0], other[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(eager[1], other[1], rtol=1e-4, atol=1e-5)
  different = run(logits, tf.constant([4, 3]))
  assert not np.allclose(eager[1], different[1])


def test_unknown_batch_size_in_graph():
  spec = tf.TensorSpec([None, 2, 4], tf.float32)
  for name in NAMES:
    fn = tf.function(lambda x, n=name: categorical.estimate(
        objective, x, n, seed=1), input_signature=[spec])
    assert fn(tf.zeros([3, 2, 4])).shape == (3,)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_logits_give_non_finite_gradient(bad):
  """A variable with a bad logit poisons its example's value and every
  gradient entry of that example; the other example stays finite."""
  logits = tf.constant([[[0.5, bad, 0.0], [0.0, 1.0, 2.0]],
                        [[0.5, 0.2, 0.0], [0.0, 1.0, 2.0]]], tf.float32)
  for name in ("rloo", "arsm_plus", "disarm_sb"):
    with tf.GradientTape() as tape:
      tape.watch(logits)
      value = categorical.estimate(objective, logits, name, seed=1)
    grad = tape.gradient(value, logits).numpy()
    assert np.isnan(value.numpy()[0]) and np.isfinite(value.numpy()[1])
    assert np.all(np.isnan(grad[0])) and np.all(np.isfinite(grad[1]))


@pytest.mark.parametrize("dtype", [tf.float64, tf.float16])
def test_dtypes(dtype):
  logits = tf.zeros([4, 3, 4], dtype)
  calls = []

  def fn(z):
    calls.append((z.shape, z.dtype))
    return tf.reduce_sum(z[..., 0], -1)

  for name in NAMES:
    with tf.GradientTape() as tape:
      tape.watch(logits)
      value = categorical.estimate(fn, logits, name, seed=0)
    assert value.shape == (4,) and value.dtype == dtype
    assert tape.gradient(value, logits).dtype == dtype
  assert all(d == dtype for _, d in calls)


def test_samples_are_one_hot_with_the_right_frequencies():
  logits = tf.constant([[2.0, 0.0, -1.0, 0.5]])
  z = categorical.sample(logits, seed=0, num_samples=100000)
  assert z.shape == (100000, 1, 4)
  np.testing.assert_array_equal(tf.reduce_sum(z, -1), 1.0)
  freq = tf.reduce_mean(z, 0).numpy()[0]
  np.testing.assert_allclose(freq, tf.nn.softmax(logits)[0], atol=0.005)
  assert categorical.sample(logits, seed=1).shape == (1, 4)


@pytest.mark.parametrize("dtype", [tf.float32, tf.float64])
def test_inverse_cdf_index_frequencies(dtype):
  """Exact frequencies, rare categories included (z-test per category)."""
  from tf_discrete.categorical import _common
  theta = tf.constant([[3.0, 0.0, -4.0, 1.0, -9.0]], dtype)
  n = 400000
  index = _common.inverse_cdf_index(theta, n, tf.constant([2, 3])).numpy()
  assert index.shape == (n, 1) and index.min() >= 0 and index.max() <= 4
  freq = np.bincount(index.ravel(), minlength=5) / n
  p = tf.nn.softmax(tf.cast(theta, tf.float64))[0].numpy()
  z = (freq - p) / np.sqrt(p * (1 - p) / n)
  assert np.all(np.abs(z) < 4.5), (freq, p)
  xla = tf.function(lambda: _common.inverse_cdf_index(
      theta, 10, tf.constant([2, 3])), jit_compile=True)()
  np.testing.assert_array_equal(xla, index[:10])


@pytest.mark.parametrize("order", ["ascending", "descending", "abs"])
def test_sort_permutation_is_a_permutation_with_ties(order):
  theta = tf.constant([[0.0, -1.0, 0.0, 1.0, -1.0]])
  perm, rank = coupled.sort_permutation(theta, order)
  np.testing.assert_array_equal(np.sort(perm.numpy()[0]), np.arange(5))
  np.testing.assert_array_equal(
      np.take_along_axis(rank.numpy(), perm.numpy(), -1)[0], np.arange(5))
  keys = {"ascending": theta, "descending": -theta, "abs": tf.abs(theta)}
  sorted_keys = np.take_along_axis(keys[order].numpy(), perm.numpy(), -1)
  assert np.all(np.diff(sorted_keys[0]) >= 0)


def test_stick_breaking_probabilities():
  theta = tf.constant([[1.0, -2.0, 0.5, 3.0]])
  alpha, _ = coupled.stick_breaking_logits(theta)
  s = tf.sigmoid(alpha).numpy()[0]
  probs = [s[0], (1 - s[0]) * s[1], (1 - s[0]) * (1 - s[1]) * s[2],
           (1 - s[0]) * (1 - s[1]) * (1 - s[2])]
  np.testing.assert_allclose(probs, tf.nn.softmax(theta)[0], rtol=1e-5)


def test_tree_probabilities():
  theta = tf.constant([[1.0, -2.0, 0.5, 3.0]])
  beta, _ = coupled.tree_logits(theta)
  s = tf.sigmoid(beta).numpy()[0]  # P(left) at nodes 0, 1, 2.
  probs = [s[0] * s[1], s[0] * (1 - s[1]), (1 - s[0]) * s[2],
           (1 - s[0]) * (1 - s[2])]
  np.testing.assert_allclose(probs, tf.nn.softmax(theta)[0], rtol=1e-5)


def test_stick_and_tree_jacobians_match_autodiff():
  theta = tf.constant(np.random.RandomState(0).randn(2, 8), tf.float32)
  upstream = tf.constant(np.random.RandomState(1).randn(2, 7), tf.float32)
  for convert in (coupled.stick_breaking_logits, coupled.tree_logits):
    with tf.GradientTape() as tape:
      tape.watch(theta)
      logits, jac = convert(theta)
    expected = tape.gradient(logits, theta, output_gradients=upstream)
    if convert is coupled.stick_breaking_logits:
      got = coupled.stick_breaking_vjp(upstream, jac)
    else:
      got = tf.einsum("...n,...ni->...i", upstream, jac)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_direct_logits_dependence_is_differentiated():
  """f(z; theta) = <a, z> * sum(theta): both paths enter the gradient."""
  logits = tf.constant([[0.5, -0.3, 0.1]])
  a = tf.constant([1.0, -1.0, 2.0])
  _, exact = diagnostics.exact_value_and_gradient(
      lambda z: tf.reduce_sum(z * a, [-2, -1]) * tf.reduce_sum(logits),
      logits, "categorical")
  runs = 40000
  replicated = tf.broadcast_to(logits, [runs, 1, 3])
  with tf.GradientTape() as tape:
    tape.watch(replicated)
    value = categorical.estimate(
        lambda z: (tf.reduce_sum(z * a, [-2, -1]) *
                   tf.reduce_sum(replicated, [-2, -1])),
        replicated, "disarm_iw", seed=3)
    total = tf.reduce_sum(value)
  grads = tape.gradient(total, replicated).numpy()
  z = (grads.mean(0) - exact.numpy()) / (grads.std(0) / np.sqrt(runs))
  assert np.all(np.abs(z) < 4), z


# ---------------------------------------------------------------------------
# Layer.
# ---------------------------------------------------------------------------


def test_layer_config_round_trip():
  layer = layers.CategoricalLatent("disarm_sb", num_samples=4, seed=3,
                                   estimator_options={"logits_order": "abs"},
                                   name="z")
  config = layer.get_config()
  clone = layers.CategoricalLatent.from_config(config)
  assert clone.get_config() == config
  assert clone.estimator == "disarm_sb" and clone.num_samples == 4
  restored = keras.saving.deserialize_keras_object(
      keras.saving.serialize_keras_object(layer))
  assert isinstance(restored, layers.CategoricalLatent)
  assert restored.estimator_options == {"logits_order": "abs"}
  assert layers.CategoricalLatent().estimator == "rloo"


def test_layer_rejects_unknown_estimator():
  with pytest.raises(ValueError, match="`estimator`"):
    layers.CategoricalLatent("arm")


def test_layer_samples_without_objective():
  layer = layers.CategoricalLatent(seed=0)
  z = layer(tf.zeros([5, 3, 4]))
  assert z.shape == (5, 3, 4)
  np.testing.assert_array_equal(tf.reduce_sum(z, -1), 1.0)


class TinyCategoricalVAE(keras.Model):
  """x -> logits [B, 2, 3] -> CategoricalLatent -> decoder -> -squared error."""

  def __init__(self, estimator):
    super().__init__()
    self.encoder = keras.layers.Dense(6)
    self.latent = layers.CategoricalLatent(estimator, seed=1)
    self.decoder = keras.layers.Dense(4)

  def call(self, x):
    logits = tf.reshape(self.encoder(x), [-1, 2, 3])

    def neg_error(z):  # [S, B, 2, 3] -> [S, B]
      flat = tf.reshape(z, tf.concat([tf.shape(z)[:2], [6]], 0))
      return -tf.reduce_mean((self.decoder(flat) - x)**2, -1)

    return self.latent(logits, objective=neg_error)


@pytest.mark.parametrize("estimator", ["rloo", "arsm_plus", "disarm_iw"])
def test_layer_trains_in_model_fit(estimator):
  x = np.random.RandomState(0).rand(32, 4).astype(np.float32)
  model = TinyCategoricalVAE(estimator)
  model.compile(optimizer=keras.optimizers.Adam(0.01),
                loss=lambda y, value: -tf.reduce_mean(value))
  encoder_before = None
  model(x[:2])
  encoder_before = model.encoder.kernel.numpy().copy()
  history = model.fit(x, np.zeros(32, np.float32), batch_size=8, epochs=2,
                      verbose=0)
  assert np.all(np.isfinite(history.history["loss"]))
  assert not np.allclose(encoder_before, model.encoder.kernel.numpy())


_REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------
# The toy command.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("family,flags", [
    ("categorical", ["--num_categories=4", "--R=3"]),
    ("bernoulli", ["--num_units=2", "--p0=0.49"]),
])
def test_toy_runs_and_writes_png(tmp_path, family, flags):
  # A subprocess, as users run it: the experiment binaries each define absl
  # flags such as --seed, so two of them cannot share one test process.
  command = [sys.executable, "-m", "experiments.toy", f"--family={family}",
             "--total_evals=120", "--num_runs=50", "--num_checkpoints=1",
             f"--output_dir={tmp_path}", *flags]
  result = subprocess.run(command, capture_output=True, text=True,
                          timeout=600, cwd=_REPO_ROOT,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
  assert result.returncode == 0, result.stderr[-3000:]
  expected = (set(NAMES) if family == "categorical" else
              {"reinforce", "rloo", "ar", "arm", "disarm"})
  table_rows = [line.split("|")[1].strip() for line in result.stdout.splitlines()
                if line.startswith("| ") and "---" not in line]
  assert expected <= set(table_rows), result.stdout
  assert (tmp_path / f"toy_{family}.png").stat().st_size > 1000
