"""Tests of experiments/study/report.py: statistics, claims and the report
made from records (byte for byte reproducible)."""

import dataclasses
import glob
import math
import os
import re
import shutil

import pytest

from experiments.study import launch
from experiments.study import report
from experiments.study import settings

REPO = settings.REPO_ROOT

# --------------------------------------------------------------------------
# Statistics, against hand-computed values.

# Three seeds; differences 2.0, 1.5, 1.0: mean 1.5, s.d. 0.5, s.e. 0.5/sqrt(3),
# t = 1.5 / (0.5/sqrt(3)) = 3 sqrt(3) with 2 degrees of freedom, whose
# two-sided p-value is 1 - t / sqrt(2 + t^2) = 1 - 3 sqrt(3) / sqrt(29).
ARM = {0: -100.0, 1: -101.0, 2: -99.0}
OTHER = {0: -102.0, 1: -102.5, 2: -100.0}
T = 3 * math.sqrt(3)
P = 1 - T / math.sqrt(2 + T * T)


def test_mean_and_standard_error():
  stats = report.mean_se(list(ARM.values()))
  assert stats.n == 3 and stats.mean == pytest.approx(-100.0)
  assert stats.se == pytest.approx(1 / math.sqrt(3))  # s.d. 1, n = 3.
  assert (stats.low, stats.high) == (-101.0, -99.0)
  one = report.mean_se([4.0])
  assert one.n == 1 and one.mean == 4.0 and one.se is None
  assert report.mean_se([]).mean is None


def test_paired_t_test_by_hand():
  test = report.paired_test(ARM, OTHER)
  assert test.seeds == (0, 1, 2)
  assert test.differences == (2.0, 1.5, 1.0)
  assert test.difference.mean == pytest.approx(1.5)
  assert test.difference.se == pytest.approx(0.5 / math.sqrt(3))
  assert test.statistic == pytest.approx(T)
  assert test.df == 2
  assert P == pytest.approx(0.0350987, abs=1e-6)
  assert test.p_value == pytest.approx(P)
  assert test.significant
  assert test.describe() == "t(2) = 5.20, p = 0.035, significant at α = 0.05"


def test_paired_t_test_matches_seeds_and_handles_few_seeds():
  # Seed 3 of the first and seed 2 of the second have no partner.
  test = report.paired_test({0: 1.0, 1: 2.0, 3: 9.0}, {0: 0.0, 1: 1.5, 2: 5})
  assert test.seeds == (0, 1) and test.differences == (1.0, 0.5)
  assert test.df == 1
  # t = 0.75 / 0.25 = 3 with 1 degree of freedom: p = 1 - 2 atan(3) / pi.
  assert test.p_value == pytest.approx(1 - 2 * math.atan(3) / math.pi)
  assert not test.significant and "not significant" in test.describe()
  single = report.paired_test({0: 1.0}, {0: 0.0, 1: 3.0})
  assert single.n == 1 and not single.testable and not single.significant
  assert single.describe() == "not testable, 1 seed"
  same = report.paired_test({0: 1.0, 1: 2.0}, {0: 0.0, 1: 1.0})
  assert not same.testable and "identical" in same.describe()
  # Against a tolerance: H0 is a mean difference of -1.
  shifted = report.paired_test(ARM, OTHER, null_difference=-1.0)
  assert shifted.statistic == pytest.approx(2.5 / (0.5 / math.sqrt(3)))


# --------------------------------------------------------------------------
# Claims on fabricated numbers.


def _rows(metric, per_seed):
  return {seed: {"step": 100, metric: v} for seed, v in per_seed.items()}


def test_claims_confirmed_contradicted_mixed_and_missing():
  claims = (
      settings.Claim("elbo", "p", "binary", "disarm", "arm", "train_elbo"),
      settings.Claim("var", "p", "binary", "disarm", "arm", "grad_variance",
                     higher_is_better=False),
      settings.Claim("rloo", "p", "binary", "disarm", "rloo", "train_elbo"),
  )
  settings_ = [("binary", "mnist", "linear"), ("binary", "mnist", "nonlinear"),
               ("binary", "omniglot", "linear")]
  row = lambda **m: {"step": 100, **m}
  finals = {
      ("binary", "mnist", "linear", "disarm"): {
          0: row(train_elbo=-100.0, grad_variance=1.0)},
      ("binary", "mnist", "linear", "arm"): {
          0: row(train_elbo=-101.0, grad_variance=2.0)},
      ("binary", "mnist", "nonlinear", "disarm"): {
          0: row(train_elbo=-90.0, grad_variance=0.5)},
      ("binary", "mnist", "nonlinear", "arm"): {
          0: row(train_elbo=-95.0, grad_variance=0.1)},
      ("binary", "mnist", "linear", "rloo"): {0: row(train_elbo=-99.0)},
  }
  elbo, var, rloo = report.evaluate_claims(finals, settings_, claims)
  assert elbo.verdict == "confirmed"
  assert [c.outcome for c in elbo.comparisons] == [
      "confirms", "confirms", "not available"]
  assert "2 of 2" in elbo.summary()
  assert "not testable (1 seed)" in elbo.summary()
  assert "1 setting not finished" in elbo.summary()
  assert var.verdict == "mixed"  # Lower in one setting, higher in the other.
  assert [c.outcome for c in var.comparisons][:2] == [
      "confirms", "contradicts"]
  assert rloo.verdict == "contradicted"
  none = report.evaluate_claims({}, settings_, claims)
  assert {r.verdict for r in none} == {"not yet available"}


def test_claims_pair_seeds_and_test_them():
  claim = settings.Claim("elbo", "p", "binary", "disarm", "arm",
                         "train_elbo")
  finals = {("binary", "d", "linear", "disarm"): _rows("train_elbo", ARM),
            ("binary", "d", "linear", "arm"): _rows("train_elbo", OTHER)}
  (result,) = report.evaluate_claims(finals, [("binary", "d", "linear")],
                                     (claim,))
  (comparison,) = result.comparisons
  assert comparison.test.p_value == pytest.approx(P)
  assert result.verdict == "confirmed"
  assert "significant (paired t-test, α = 0.05) in 1 of 1" in (
      result.summary())
  # The other direction: the claim fails, significantly.
  lower = settings.Claim("var", "p", "binary", "disarm", "arm", "train_elbo",
                         higher_is_better=False)
  (result,) = report.evaluate_claims(finals, [("binary", "d", "linear")],
                                     (lower,))
  assert result.verdict == "contradicted"
  assert "significantly the other way in 1" in result.summary()


def test_claims_with_tolerance():
  settings_ = [("categorical", "mnist", "20x10")]
  competitive = settings.Claim("c", "p", "categorical", "disarm_sb",
                               "rloo_k2", "train_elbo", tolerance=1.0)
  beats = settings.Claim("b", "p", "categorical", "disarm_sb", "rloo_k2",
                         "train_elbo")
  finals = {
      ("categorical", "mnist", "20x10", "disarm_sb"): _rows(
          "train_elbo", {0: -100.5}),
      ("categorical", "mnist", "20x10", "rloo_k2"): _rows(
          "train_elbo", {0: -99.8, 1: -99.0}),
  }
  result_c, result_b = report.evaluate_claims(finals, settings_,
                                              (competitive, beats))
  assert result_c.verdict == "confirmed"  # 0.7 nats below: within 1 nat.
  assert result_b.verdict == "contradicted"
  assert result_c.comparisons[0].test.seeds == (0,)
  finals[("categorical", "mnist", "20x10", "disarm_sb")] = _rows(
      "train_elbo", {0: -101.5})
  (result_c,) = report.evaluate_claims(finals, settings_, (competitive,))
  assert result_c.verdict == "contradicted"  # 1.7 nats below.


def test_claims_ignore_missing_or_nan_metrics():
  claim = settings.Claim("v", "p", "binary", "disarm", "arm",
                         "grad_variance", higher_is_better=False)
  finals = {("binary", "d", "linear", "disarm"): {0: {"train_elbo": -1.0}},
            ("binary", "d", "linear", "arm"): {
                0: {"grad_variance": float("nan")}}}
  (result,) = report.evaluate_claims(finals, [("binary", "d", "linear")],
                                     (claim,))
  assert result.verdict == "not yet available"


# --------------------------------------------------------------------------
# The report, from fabricated runs' records.


def _fabricate_binary(options, fabricate, named):
  """Linear binary runs on synthetic data: DisARM and ARM finished with 3
  seeds (train ELBO ARM and OTHER above), RLOO seed 0 finished, seed 1 at
  step 10 (stopped), seed 2 pending."""
  runs = settings.study_runs(options)
  for seed in (0, 1, 2):
    fabricate(named(runs, f"binary/synthetic-linear-disarm-seed{seed}"), 20,
              elbo=ARM[seed], variance=0.5 + 0.1 * seed)
    fabricate(named(runs, f"binary/synthetic-linear-arm-seed{seed}"), 20,
              elbo=OTHER[seed], variance=2.0 + 0.3 * seed * seed)
  fabricate(named(runs, "binary/synthetic-linear-rloo-seed0"), 20,
            elbo=-50.0, variance=0.01)
  fabricate(named(runs, "binary/synthetic-linear-rloo-seed1"), 10,
            summary=False, elbo=-40.0, variance=0.01, returncode=None)
  return runs


def _table_rows(text, prefix):
  return {l.split(" | ")[2]: l for l in text.splitlines()
          if l.startswith(prefix)}


def test_report_from_records(make_options, fabricate, named, tmp_path):
  options = make_options()
  runs = _fabricate_binary(options, fabricate, named)
  assert launch.run_study(dataclasses.replace(options,
                                              report_only=True)) == 0
  text = open(options.report).read()
  summary = _table_rows(text, "| synthetic | linear |")
  # Mean ± s.e. over the three finished seeds, n, range of the variance.
  assert "| 3 of 3 | −100.00 ± 0.58 | −95.00 ± 0.58 |" in summary["DisARM"]
  assert "0.6 ± 0.0577 | 0.5 – 0.7 |" in summary["DisARM"]
  assert "| 3 of 3 | −101.50 ± 0.76 |" in summary["ARM"]
  assert "| 1 of 3 | −50.00 | −45.00 | 0.01 | — |" in summary["RLOO (K=2)"]
  # The paired test of the claim, with the hand-computed numbers.
  claim = next(l for l in text.splitlines()
               if l.startswith("  - synthetic, linear: −100.00 ± 0.58 vs "
                               "−101.50 ± 0.76"))
  assert ("difference +1.50 ± 0.29; t(2) = 5.20, p = 0.035, significant at "
          "α = 0.05; holds.") in claim
  claims = [l for l in text.splitlines() if l.startswith("- **")]
  by_text = {c.split(" — ")[1].split(" (")[0]: c for c in claims}
  assert by_text["DisARM reaches a higher train ELBO than ARM"].startswith(
      "- **confirmed so far**")
  assert "significant (paired t-test, α = 0.05) in 1 of 1" in by_text[
      "DisARM reaches a higher train ELBO than ARM"]
  # RLOO has one finished seed: compared, not testable.
  assert "not testable (1 seed)" in by_text[
      "DisARM reaches a higher train ELBO than RLOO"]
  # Runs in progress and pending, per table.
  assert ("- In progress (started, not finished): synthetic-linear-rloo-seed1"
          " at step 10 of 20 (stopped).") in text
  assert "synthetic-linear-rloo (seed 2)" in text
  assert "| synthetic-linear-rloo-seed1 | **in progress** at 10 / 20 " in text
  assert "*−40.00*†" in text  # Partial values are marked.
  assert "Test CPU, 2 cores, no GPU, TensorFlow 9.9" in text
  assert "- Wall time: 8 min in all" in text  # 8 launches of 60 s.
  assert "- Code: git commit `abcabcabcabc`." in text
  assert "](figures/binary_train_elbo.png)" in text
  assert "[binary/synthetic-linear-disarm-seed0](records/binary/" in text
  assert os.path.exists(tmp_path / "docs" / "figures" /
                        "binary_train_elbo.png")
  assert "Figures appear here once runs have written metrics." in text
  # Nothing of the machine the report was made on.
  assert str(tmp_path) not in text
  assert not re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d", text)
  assert "issue" not in text.lower() and "DESIGN" not in text
  assert len(runs) == text.count("\n| synthetic-")


def _files(folder):
  return {os.path.relpath(p, folder): open(p, "rb").read()
          for p in sorted(glob.glob(os.path.join(folder, "**", "*"),
                                    recursive=True)) if os.path.isfile(p)}


def test_a_table_shows_its_groups_own_metrics(make_options, fabricate, named,
                                            tmp_path):
  """The relaxation table shows the bias check beside the common columns,
  and the multi-sample table its training bound; others do not."""
  options = make_options()
  runs = settings.study_runs(options)
  relaxation = [r for r in runs if r.group == "relaxation"]
  for i, run in enumerate(relaxation):
    fabricate(run, 20, elbo=-100.0 - i, variance=0.01,
              row_metrics={settings.BIAS_METRIC: 0.5 + i,
                           settings.BIAS_NOISE_METRIC: 0.125})
  fabricate(named(runs, "binary/synthetic-linear-disarm-seed0"), 20)
  assert launch.run_study(dataclasses.replace(options,
                                              report_only=True)) == 0
  text = open(options.report).read()
  sections = text.split("\n## ")
  section = next(s for s in sections if s.startswith(
      f"{[g.name for g in settings.GROUPS].index('relaxation') + 1}. "))
  header = next(l for l in section.splitlines() if l.startswith(
      "| data set |"))
  assert ("| test 100-sample bound | encoder-gradient bias (relative) | "
          "noise level of the bias | grad variance |") in header
  last = relaxation[-1]
  row = next(l for l in section.splitlines()
             if l.startswith(f"| {last.short_name} |"))
  assert f"| {0.5 + len(relaxation) - 1:.3g} | 0.125 | 0.01 |" in row
  figure = "relaxation_bias_check_relative_error.png"
  assert f"](figures/{figure})" in section
  assert os.path.isfile(tmp_path / "docs" / "figures" / figure)
  binary = next(s for s in sections if s.startswith("1. "))
  assert "| test 100-sample bound | grad variance |" in binary
  assert "encoder-gradient bias" not in binary


def test_report_from_records_is_byte_identical(make_options, fabricate, named,
                                               tmp_path):
  first = make_options(report=str(tmp_path / "a" / "docs" / "results.md"))
  _fabricate_binary(first, fabricate, named)
  assert launch.run_study(dataclasses.replace(first, report_only=True)) == 0
  made = _files(tmp_path / "a" / "docs")
  assert "records/binary/synthetic-linear-disarm-seed0/status.json" in made
  # Elsewhere, from a copy of the records alone (no run directories).
  shutil.copytree(tmp_path / "a" / "docs" / "records",
                  tmp_path / "b" / "docs" / "records")
  second = make_options(root=str(tmp_path / "b" / "no_runs"),
                        report=str(tmp_path / "b" / "docs" / "results.md"))
  assert launch.run_study(dataclasses.replace(second, report_only=True)) == 0
  assert _files(tmp_path / "b" / "docs") == made
  # And again in place: nothing changes.
  report.write_report(first)
  assert _files(tmp_path / "a" / "docs") == made


def _study_at_length(make_options, group, steps):
  """The real study's runs, ``group`` at ``steps``, every other table at 20."""
  lengths = {g.name: 20 for g in settings.GROUPS}
  lengths[group] = steps
  options = make_options(datasets=None, eval_every=None, steps=lengths)
  return options, settings.study_runs(options)


def _report_from_runs(options):
  assert launch.run_study(dataclasses.replace(options,
                                              report_only=True)) == 0
  return open(options.report).read()


def test_variance_reference_written_in_the_metrics_digits(make_options,
                                                         fabricate, named):
  options, runs = _study_at_length(make_options, "control_variates",
                                   100_000)
  fabricate(named(runs, "control_variates/dynamic_mnist-K2-rodeo-seed0"),
            100_000, variance=0.0112, eval_every=50_000)
  fabricate(named(runs, "control_variates/dynamic_mnist-K3-relax-seed0"),
            50_000, summary=False, variance=0.00851, eval_every=50_000)
  text = _report_from_runs(options)
  table = text[text.index("## 8. Learned control variates"):]
  assert ("| dynamic_mnist | RODEO (K=2) | grad variance | 0.0112 | "
          "100,000 | 0.0101 (theirs) | 100,000 | +0.0011 |") in table
  assert ("| dynamic_mnist | RODEO (K=2) | grad variance | 0.0112 | "
          "100,000 | 0.0107 (theirs) | 1,000,000 | +0.0005 |") in table
  assert ("| dynamic_mnist | RELAX | grad variance | *0.00851*† | "
          "*50,000*† of 100,000 | 0.0094 (theirs) | 100,000 | "
          "*−0.00089*† |") in table
  # Shorter than the paper only against its 1,000,000-step values.
  assert table.count("Our runs train fewer steps than the paper's") == 1
  assert "no ELBO of theirs is shown rather than a guess" in table


def test_paper_table_beside_the_papers_numbers(make_options, fabricate, named,
                                               monkeypatch):
  options, runs = _study_at_length(make_options, "paper",
                                   settings.PAPER_STEPS)
  every = 250_000
  fabricate(named(runs, "paper/dynamic_mnist-nonlinear-disarm-seed0"),
            settings.PAPER_STEPS, elbo=-99.5, eval_every=every)
  # Test bound = train ELBO + 5 in fabricated runs: -234.3 and -229.3.
  fabricate(named(runs, "paper/fashion_mnist-nonlinear-disarm-seed0"),
            settings.PAPER_STEPS, elbo=-234.3, eval_every=every)
  fabricate(named(runs, "paper/omniglot-nonlinear-disarm-seed0"), 500_000,
            summary=False, elbo=-120.0, eval_every=every)
  monkeypatch.setattr(settings, "NOTES", {})
  text = _report_from_runs(options)
  paper = text[text.index("## 5. The papers' length"):]
  assert ("| dynamic_mnist | DisARM | train ELBO | −99.50 | 1,000,000 | "
          "−97.95 (theirs) | 1,000,000 | −1.55 |") in paper
  assert ("| fashion_mnist | DisARM | train ELBO | −234.30 | 1,000,000 | "
          "−234.40 (theirs) | 1,000,000 | +0.10 |") in paper
  assert ("| omniglot | DisARM | train ELBO | *−120.00*† | *500,000*† of "
          "1,000,000 | −108.60 (theirs) | 1,000,000 | *−11.40*† |") in paper
  gap = ("**A gap of more than 1 nat remains at 1,000,000 steps**: "
         "dynamic_mnist DisARM, train ELBO: ours −99.50, theirs −97.95 "
         "(−1.55 nats). **Explanation pending**: no note yet for "
         "`paper/dynamic_mnist-nonlinear-disarm-seed0`")
  assert gap in paper
  assert "fashion_mnist DisARM, test 100-sample bound: ours −229.30" in paper
  assert "fashion_mnist DisARM, train ELBO: ours" not in paper  # 0.1 nats.
  assert "Not finished yet: omniglot DisARM;" in paper
  assert "Our runs train fewer steps" not in paper
  assert "third sample" in paper and "omniglot28.mat" in paper
  assert "re-binarizes" in paper
  # A note in settings.NOTES takes the place of "explanation pending".
  monkeypatch.setattr(settings, "NOTES", {
      "paper/dynamic_mnist-nonlinear-disarm-seed0": "Because of X."})
  text = report.write_report(options)
  assert "(−1.55 nats). Because of X." in text
  assert "- Note on `paper/dynamic_mnist-nonlinear-disarm-seed0`: Because of " \
         "X." in text


def test_committed_report_is_made_from_the_committed_records(tmp_path):
  records = os.path.join(REPO, "docs", "records")
  if not glob.glob(os.path.join(records, "*", "*", "status.json")):
    pytest.skip("no records committed yet")
  shutil.copytree(records, tmp_path / "docs" / "records")
  options = settings.Options(root=str(tmp_path / "no_runs"),
                             report=str(tmp_path / "docs" / "results.md"),
                             reuse_from=())
  text = report.write_report(options)
  with open(os.path.join(REPO, "docs", "results.md")) as f:
    assert text == f.read()
  for name in re.findall(r"\]\((figures/[^)]+\.png)\)", text):
    with open(tmp_path / "docs" / name, "rb") as ours, open(
        os.path.join(REPO, "docs", name), "rb") as committed:
      assert ours.read() == committed.read(), name
