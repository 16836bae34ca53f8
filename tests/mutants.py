"""The mutation check of the test suite: known bugs the tests must catch.

    python -m tests.mutants                 # every mutant
    python -m tests.mutants --only=disarm_sigma_theta,no_replica_scaling
    python -m tests.mutants --list

Each mutant is one deliberate bug: a piece of source text replaced by a
wrong one. For each, the checkout's tracked files are copied to a scratch
folder, the bug is applied there (the original text must occur exactly
once, so a mutant that no longer applies is reported, not skipped), and the
tests named by the mutant run against the copy. A mutant is *killed* when
those tests fail, and *survives* when they pass; the command exits 1 if any
mutant survives or no longer applies.

A new estimator family adds its mutants here as it lands.
"""

import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Sequence, Tuple

from experiments import cli
from experiments.cli import Flag

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclasses.dataclass(frozen=True)
class Mutant:
  """A known bug.

  Attributes:
    name: short identifier.
    bug: what is wrong, in words.
    path: the file changed, relative to the repository.
    original: text that must occur exactly once in ``path``.
    mutated: what replaces it.
    tests: pytest node ids or files that must fail.
  """
  name: str
  bug: str
  path: str
  original: str
  mutated: str
  tests: Tuple[str, ...]


_MODEL = "tests/experiments/test_model_gradients.py"
_BERNOULLI = "tests/tf_discrete/bernoulli/test_bernoulli.py"
_DISTRIBUTED = "tests/experiments/test_distributed_step.py"

MUTANTS: Tuple[Mutant, ...] = (
    Mutant(
        "disarm_sigma_theta", "DisARM weighted by sigma(theta), not "
        "sigma(|theta|)", "tf_discrete/bernoulli/augment.py",
        "return 0.5 * disagree * sign * tf.sigmoid(tf.abs(logits))",
        "return 0.5 * disagree * sign * tf.sigmoid(logits)",
        (f"{_MODEL}::test_bernoulli_vae_gradient_is_exact[disarm-1]",
         _BERNOULLI)),
    Mutant(
        "disarm_missing_half", "DisARM without its 1/2",
        "tf_discrete/bernoulli/augment.py",
        "return 0.5 * disagree * sign * tf.sigmoid(tf.abs(logits))",
        "return disagree * sign * tf.sigmoid(tf.abs(logits))",
        (f"{_MODEL}::test_bernoulli_vae_gradient_is_exact[disarm-1]",)),
    Mutant(
        "bound_drops_log_q_path", "the multi-sample-bound estimators' VAE "
        "objective without the pathwise gradient of -log q",
        "experiments/models/bernoulli.py",
        "    pathwise = estimates_bound(cfg.estimator)\n"
        "    separate = cfg.decoder_grad == SEPARATE_SAMPLE\n",
        "    pathwise = False\n"
        "    separate = cfg.decoder_grad == SEPARATE_SAMPLE\n",
        (f"{_MODEL}::test_bernoulli_vae_gradient_is_exact[vimco-1]",
         f"{_MODEL}::test_bernoulli_vae_gradient_is_exact[local_disarm-1]")),
    Mutant(
        "encoder_gradient_zeroed", "the VAE's encoder gets no estimator "
        "gradient", "experiments/models/bernoulli.py",
        "return bernoulli.estimate(objective, scale_gradient(logits, scale),",
        "return bernoulli.estimate(objective, tf.stop_gradient(logits),",
        ("tests/experiments/test_encoder_learning.py",)),
    Mutant(
        "no_replica_scaling", "per-replica gradients not divided by the "
        "number of replicas", "experiments/training/step.py",
        "grads = tf.nest.map_structure(lambda g: g / replicas, grads)",
        "grads = tf.nest.map_structure(lambda g: g, grads)",
        (_DISTRIBUTED,)),
    Mutant(
        "replica_seed_not_folded", "every replica draws the same noise",
        "experiments/training/step.py",
        "seed = distribute.fold_seed(self.train_seed, step, replica)",
        "seed = distribute.fold_seed(self.train_seed, step)",
        (_DISTRIBUTED,)),
    Mutant(
        "replica_batch_offset", "every replica reads the first share of "
        "the batch", "experiments/training/step.py",
        "+ tf.cast(replica, tf.int32) * local_batch)",
        "+ 0 * local_batch)",
        (_DISTRIBUTED,)),
    Mutant(
        "loo_baseline_includes_self", "the leave-one-out baseline is the "
        "mean of all samples, the sample's own included",
        "tf_discrete/_core.py",
        "return (total - values) / tf.cast(k - 1, values.dtype)",
        "return total / tf.cast(k, values.dtype)",
        (f"{_MODEL}::test_bernoulli_vae_gradient_is_exact[rloo-1]",)),
    Mutant(
        "loo_baseline_divides_by_k", "the leave-one-out mean divides by K "
        "(still unbiased for RLOO: only a closed form catches it)",
        "tf_discrete/_core.py",
        "return (total - values) / tf.cast(k - 1, values.dtype)",
        "return (total - values) / tf.cast(k, values.dtype)",
        ("tests/tf_discrete/test_core.py",)),
    Mutant(
        "vimco_no_baseline", "VIMCO's learning signal without its "
        "leave-one-out baseline (unbiased, so only a closed form catches it)",
        "tf_discrete/bernoulli/score_function.py",
        "    signal = (_core.log_mean_exp(values)[tf.newaxis] -\n"
        "              _core.leave_one_out_log_mean_exp(values))",
        "    signal = (_core.log_mean_exp(values)[tf.newaxis] -\n"
        "              0.0 * _core.leave_one_out_log_mean_exp(values))",
        (f"{_BERNOULLI}::test_vimco_gradient_closed_form_two_samples",)),
    Mutant(
        "stick_breaking_sign_flip", "the DisARM sign (-1)^b2 flipped on the "
        "stick-breaking and tree bits", "tf_discrete/categorical/coupled.py",
        "disarm = half_diff * disagree * (1.0 - 2.0 * bits2) * tf.sigmoid(",
        "disarm = half_diff * disagree * (2.0 * bits2 - 1.0) * tf.sigmoid(",
        (f"{_MODEL}::test_categorical_vae_gradient_is_exact"
         f"[disarm_sb-estimator_samples]",
         f"{_MODEL}::test_categorical_vae_gradient_is_exact"
         f"[disarm_tree-estimator_samples]")),
    Mutant(
        "two_layer_no_stop_gradient", "the two-layer Keras model's layer-2 "
        "objective without its stop-gradient, its value doubled",
        "tf_discrete/examples.py",
        "      return tf.stop_gradient(\n"
        "          self._elbo(x, b1, b2_samples, logits1, logits2))",
        "      return 2.0 * (\n"
        "          self._elbo(x, b1, b2_samples, logits1, logits2))",
        ("tests/tf_discrete/test_layers.py::"
         "test_second_layer_gets_only_its_estimator_gradient",)),
    Mutant(
        "straight_through_no_sigmoid_slope", "straight-through passes the "
        "objective's gradient through unchanged instead of through the "
        "slope of sigma(theta)", "tf_discrete/bernoulli/relaxation.py",
        "    del draw\n    return sigmoid_derivative(theta)",
        "    del draw\n    return tf.ones_like(theta)",
        ("tests/tf_discrete/bernoulli/test_relaxation.py::"
         "test_straight_through_exact_for_linear_objective",)),
    Mutant(
        "arms_leave_one_out_k", "ARMS divides the leave-one-out sum by K "
        "instead of K - 1", "tf_discrete/bernoulli/multisample.py",
        "  grad = (tf.reduce_sum(centred * score, 0) / (k - 1.0) *",
        "  grad = (tf.reduce_sum(centred * score, 0) / k *",
        ("tests/tf_discrete/bernoulli/test_multisample.py::"
         "test_arms_unbiased",)),
    Mutant(
        "rebar_control_variate_uncorrected", "REBAR subtracts its control "
        "variate from the score term without adding back its reparameterized "
        "mean", "tf_discrete/bernoulli/control_variates.py",
        "              + dc[0] * jacobian_z\n",
        "              + 0.0 * dc[0] * jacobian_z\n",
        ("tests/tf_discrete/bernoulli/test_control_variates.py::"
         "test_unbiased_untrained",)),
    Mutant(
        "enumeration_drops_a_state", "the exact expectation misses the "
        "last enumerated state", "tf_discrete/diagnostics.py",
        "      result = tf.reduce_sum(tf.exp(log_q) * values, axis=0)",
        "      result = tf.reduce_sum((tf.exp(log_q) * values)[:-1], axis=0)",
        ("tests/tf_discrete/test_diagnostics.py",)),
    Mutant(
        "model_drops_control_variate", "the VAE model builds the control-"
        "variate state but does not pass it to its estimator (it never "
        "trains)", "experiments/models/estimator_state.py",
        '      added["control_variate"] = self.control_variates[layer]\n',
        "      pass\n",
        (_MODEL + "::test_control_variates_train_in_the_model",)),
    Mutant(
        "schedule_ignores_step", "the annealed temperature stays at its "
        "initial value", "experiments/models/estimator_state.py",
        "      self.variables[name].assign(schedule(step))",
        "      self.variables[name].assign(schedule(0))",
        ("tests/experiments/test_bernoulli_vae.py::"
         "test_annealed_temperature_and_control_variates_resume",)),
    Mutant(
        "non_chief_writes_summary", "under multi-worker training every "
        "worker writes summary.json and curves.png into the shared logdir",
        "experiments/training/loop.py",
        "    if self.is_chief:\n      outputs.write_json(",
        "    if True:\n      outputs.write_json(",
        ("tests/experiments/test_multi_worker.py",)),
)


def _tracked_files(root: str) -> Sequence[str]:
  out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"],
                       cwd=root, capture_output=True, text=True, check=True)
  return [p for p in out.stdout.splitlines() if os.path.isfile(
      os.path.join(root, p))]


def scratch_copy(root: str, dest: str):
  """Copies the checkout's tracked and untracked-but-not-ignored files."""
  for path in _tracked_files(root):
    target = os.path.join(dest, path)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    shutil.copy2(os.path.join(root, path), target)


def apply(mutant: Mutant, tree: str):
  """Applies ``mutant`` in ``tree``; ValueError if it no longer applies."""
  path = os.path.join(tree, mutant.path)
  with open(path) as f:
    text = f.read()
  count = text.count(mutant.original)
  if count != 1:
    raise ValueError(f"{mutant.name}: its original text occurs {count} times "
                     f"in {mutant.path} (must be exactly once)")
  with open(path, "w") as f:
    f.write(text.replace(mutant.original, mutant.mutated))


def _pytest(tree: str, tests: Sequence[str], timeout: int):
  env = {**os.environ, "PYTHONPATH": tree, "TF_CPP_MIN_LOG_LEVEL": "2"}
  return subprocess.run(
      [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
       *tests], cwd=tree, env=env, capture_output=True, text=True,
      timeout=timeout)


def baseline(mutants: Sequence[Mutant], timeout: int = 3600):
  """The mutants' tests on an unmutated copy: ``(passed, output tail)``.
  A kill means something only if these pass."""
  tests = sorted({t for m in mutants for t in m.tests})
  with tempfile.TemporaryDirectory(prefix="mutant-baseline-") as tree:
    scratch_copy(ROOT, tree)
    result = _pytest(tree, tests, timeout)
  return result.returncode == 0, "\n".join(
      result.stdout.strip().splitlines()[-5:])


def run_mutant(mutant: Mutant, timeout: int = 1800) -> Tuple[str, float, str]:
  """``(outcome, seconds, output tail)``; outcome is killed, survived or
  stale (no longer applies)."""
  start = time.time()
  with tempfile.TemporaryDirectory(prefix=f"mutant-{mutant.name}-") as tree:
    scratch_copy(ROOT, tree)
    try:
      apply(mutant, tree)
    except ValueError as e:
      return "stale", time.time() - start, str(e)
    result = _pytest(tree, mutant.tests, timeout)
  tail = "\n".join(result.stdout.strip().splitlines()[-3:])
  # Exit 1: tests failed. Anything else (0: passed; 2-5: errors, nothing
  # collected) is not a kill by the named tests.
  outcome = "killed" if result.returncode == 1 else "survived"
  return outcome, time.time() - start, tail


FLAG_SPECS = {
    "only": Flag("list", [], "Mutant names to run (default: all)."),
    "list": Flag("bool", False, "List the mutants and exit."),
    "baseline": Flag("bool", True, "First run the selected mutants' tests "
                     "on an unmutated copy; stop if they fail there."),
}


def main(values):
  names = [m.name for m in MUTANTS]
  unknown = sorted(set(values["only"]) - set(names))
  if unknown:
    print(f"unknown mutants {unknown}; known: {', '.join(names)}",
          file=sys.stderr)
    return 2
  selected = [m for m in MUTANTS if not values["only"]
              or m.name in values["only"]]
  if values["list"]:
    for m in selected:
      print(f"{m.name:28s} {m.path}: {m.bug}\n{'':28s} tests: "
            f"{' '.join(m.tests)}")
    return 0
  if values["baseline"]:
    passed, tail = baseline(selected)
    print(f"baseline (unmutated copy): {'passed' if passed else 'FAILED'}",
          flush=True)
    if not passed:
      print("  " + tail.replace("\n", "\n  "))
      return 2
  bad = 0
  print(f"{len(selected)} mutants", flush=True)
  for m in selected:
    outcome, seconds, tail = run_mutant(m)
    bad += outcome != "killed"
    print(f"{outcome.upper():8s} {m.name:28s} {seconds:6.0f} s  "
          f"{' '.join(m.tests)}", flush=True)
    if outcome != "killed":
      print("  " + tail.replace("\n", "\n  "), flush=True)
  print(f"{len(selected) - bad} killed, {bad} not killed")
  return 1 if bad else 0


if __name__ == "__main__":
  cli.run_program(FLAG_SPECS, main)
