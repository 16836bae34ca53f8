"""Categorical estimators against exact enumerated gradients and the contract."""

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tests import support
from tf_discrete import categorical
from tf_discrete import diagnostics

# The registry names of the public contract (more may be registered).
CONTRACT_NAMES = ["reinforce", "rloo", "ar", "ars", "arsm", "ars_plus",
                  "arsm_plus", "disarm_sb", "disarm_tree", "disarm_iw"]
# Every registered estimator of E_q[f] that declares itself unbiased.
NAMES = [name for name, est in categorical.REGISTRY.items()
         if est.facts.unbiased and est.facts.estimates.name == "MEAN"]
NUM_RUNS = 20000

LOGITS = {c: diagnostics.categorical_problem(c).logits for c in (2, 3, 4)}
objective = diagnostics.coupled_objective


def _cases():
  for c in (2, 3, 4):
    for name in NAMES:
      try:
        categorical.get(name).check_event_shape([2, c])
      except ValueError:
        continue  # e.g. disarm_tree needs C a power of 2.
      yield name, c


def _assert_unbiased(stats):
  # An estimator that is exact on a problem (the unordered set covering
  # every state) has only rounding noise, which a z-score magnifies (the
  # float32 mean over the runs alone is off by up to ~1e-3 relative).
  exact_grad = np.isclose(stats.grad_mean, stats.exact_grad, rtol=2e-3,
                          atol=1e-6)
  exact_value = np.isclose(stats.value_mean, stats.exact_value, rtol=2e-3,
                           atol=1e-6)
  assert np.all((np.abs(stats.grad_z) < 4) | exact_grad), (
      stats.grad_z, stats.grad_mean, stats.exact_grad)
  assert np.all((np.abs(stats.value_z) < 4) | exact_value), stats.value_z


def test_available_lists_the_contract_names():
  assert set(CONTRACT_NAMES) <= set(categorical.available())
  assert categorical.available() == sorted(categorical.available())


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
    "name,c", [(n, c) for n in CONTRACT_NAMES for c in (3, 4, 8)
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
  with pytest.raises(ValueError, match="`symmetry_mask`"):
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

  support.assert_same_in_eager_graph_xla(
      lambda logits, seed: categorical.estimate(
          objective, logits, name,
          seed=seed, **options),
      logits, seed, tf.constant([4, 3]), grad_rtol=1e-4)


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


_REPO_ROOT = pathlib.Path(__file__).resolve().parents[3]


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
