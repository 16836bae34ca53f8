"""What the study reports: tables, claims with their tests, figures.

The report (``docs/results.md``) and its figures are made from the runs'
records alone (see :mod:`records`), never from the run directories, so the
same records give the same bytes on any checkout: no generation time, no
absolute path, the study's order everywhere, PNGs without a software stamp.

Per table: the steps, seeds, wall time (sum over runs), machines, git
commits, the runs still in progress or pending; per (data set, setting,
estimator) the mean ± standard error over the seeds that finished of the
train ELBO, the test 100-sample bound and the encoder gradient variance (with
its range over seeds); per run its status and numbers. Each claim is checked
in every setting of its table by a paired comparison over the seeds both
estimators finished (paired t-test, two-sided, alpha 0.05).
"""

import dataclasses
import math
import os
import warnings
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from experiments import hardware
from experiments.study import records
from experiments.study import settings
from experiments.study.records import RunState
from experiments.study.settings import Claim, Group, Options, Run

ALPHA = 0.05
TITLE = "# Results: gradient estimators for discrete latent variables"
# Metrics of the tables: (metrics.jsonl key, column title, formatter name).
TABLE_METRICS = (("train_elbo", "train ELBO"),
                 ("test_iwae", "test 100-sample bound"),
                 ("grad_variance", "grad variance"))

# --------------------------------------------------------------------------
# Statistics.


@dataclasses.dataclass(frozen=True)
class Stats:
  """Mean, standard error (None below 2 values), range of some values."""
  n: int
  mean: Optional[float]
  se: Optional[float]
  low: Optional[float]
  high: Optional[float]


def mean_se(values: Sequence[float]) -> Stats:
  """Mean and standard error of the mean (sample s.d. / sqrt(n))."""
  values = [float(v) for v in values]
  n = len(values)
  if not n:
    return Stats(0, None, None, None, None)
  mean = math.fsum(values) / n
  se = None
  if n > 1:
    var = math.fsum((v - mean) ** 2 for v in values) / (n - 1)
    se = math.sqrt(var / n)
  return Stats(n, mean, se, min(values), max(values))


@dataclasses.dataclass(frozen=True)
class PairedTest:
  """Paired comparison of two estimators over the seeds both finished.

  ``differences`` are ``arm - other`` per seed; the t-test
  (``scipy.stats.ttest_rel``, two-sided) tests a mean difference of
  ``null_difference``.
  """
  seeds: Tuple[int, ...]
  arm_values: Tuple[float, ...]
  other_values: Tuple[float, ...]
  null_difference: float = 0.0
  statistic: Optional[float] = None
  df: Optional[int] = None
  p_value: Optional[float] = None

  @property
  def n(self) -> int:
    return len(self.seeds)

  @property
  def differences(self) -> Tuple[float, ...]:
    return tuple(a - o for a, o in zip(self.arm_values, self.other_values))

  @property
  def difference(self) -> Stats:
    return mean_se(self.differences)

  @property
  def testable(self) -> bool:
    return self.p_value is not None

  @property
  def significant(self) -> bool:
    return self.testable and self.p_value < ALPHA

  def describe(self) -> str:
    """The test and its outcome, e.g. "t(2) = 5.20, p = 0.035,
    significant"."""
    if self.n < 2:
      return f"not testable, {self.n} seed"
    if not self.testable:
      return (f"not testable: the {self.n} per-seed differences are "
              f"identical")
    t = ("∞" if math.isinf(self.statistic) else
         f"{self.statistic:.2f}").replace("-", "−")
    if math.isinf(self.statistic) and self.statistic < 0:
      t = "−∞"
    p = "p < 0.001" if self.p_value < 0.001 else f"p = {self.p_value:.3f}"
    verdict = "significant" if self.significant else "not significant"
    return f"t({self.df}) = {t}, {p}, {verdict} at α = {ALPHA}"


def paired_test(arm: Mapping[int, float], other: Mapping[int, float],
                null_difference: float = 0.0) -> PairedTest:
  """Pairs the values of two estimators by seed and t-tests the differences.

  Args:
    arm: seed -> value of the first estimator.
    other: seed -> value of the second.
    null_difference: the mean difference (arm - other) of the null
      hypothesis (0, or minus a claim's tolerance).

  Returns:
    The test over the seeds in both; no t-test below 2 seeds or when the
    differences are all the same (their s.d. is 0).
  """
  seeds = tuple(sorted(set(arm) & set(other)))
  a = tuple(float(arm[s]) for s in seeds)
  o = tuple(float(other[s]) for s in seeds)
  test = PairedTest(seeds, a, o, null_difference)
  if len(seeds) < 2:
    return test
  diffs = test.differences
  if max(diffs) - min(diffs) <= 1e-12 * max(1.0, max(map(abs, diffs))):
    return test
  from scipy import stats  # pylint: disable=g-import-not-at-top
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    result = stats.ttest_rel([x - null_difference for x in a], list(o))
  return dataclasses.replace(test, statistic=float(result.statistic),
                             df=len(seeds) - 1, p_value=float(result.pvalue))


# --------------------------------------------------------------------------
# Claims.


@dataclasses.dataclass
class Comparison:
  dataset: str
  setting: str
  arm_values: Dict[int, float]  # seed -> value (finished seeds)
  other_values: Dict[int, float]
  test: PairedTest
  outcome: str  # "confirms", "contradicts" or "not available"


@dataclasses.dataclass
class ClaimResult:
  claim: Claim
  verdict: str  # "confirmed", "contradicted", "mixed", "not yet available"
  comparisons: List[Comparison]

  @property
  def available(self) -> List[Comparison]:
    return [c for c in self.comparisons if c.outcome != "not available"]

  def summary(self) -> str:
    available = self.available
    confirmed = [c for c in available if c.outcome == "confirms"]
    missing = len(self.comparisons) - len(available)
    if not available:
      return "no finished pair of runs yet"
    text = (f"holds in {len(confirmed)} of {len(available)} finished "
            f"setting{'s' if len(available) > 1 else ''}")
    testable = [c for c in available if c.test.testable]
    if not testable:
      text += "; not testable (1 seed)" if all(
          c.test.n < 2 for c in available) else "; no setting testable"
    else:
      for_ = sum(c.test.significant for c in confirmed)
      against = sum(c.test.significant for c in available
                    if c.outcome == "contradicts")
      text += (f"; significant (paired t-test, α = {ALPHA}) in {for_} of "
               f"{len(testable)} testable setting"
               f"{'s' if len(testable) > 1 else ''}")
      if against:
        text += f", significantly the other way in {against}"
    if missing:
      text += f"; {missing} setting{'s' if missing > 1 else ''} not finished"
    return text


def evaluate_claims(finals: Mapping[Tuple[str, str, str, str],
                                    Mapping[int, Mapping[str, Any]]],
                    settings_: Sequence[Tuple[str, str, str]],
                    claims: Optional[Sequence[Claim]] = None
                   ) -> List[ClaimResult]:
  """Checks every claim on the final metrics of finished runs.

  Args:
    finals: (group, dataset, setting, arm) -> seed -> final metrics row of
      the finished runs of that configuration.
    settings_: every (group, dataset, setting) of the study, finished or not.
    claims: the claims (default: the study's).

  Returns:
    One result per claim: per setting, the seeds both arms finished, the
    paired differences and their t-test, and whether the claim holds there
    (by the mean difference: the better direction, or within the tolerance);
    the verdict is "confirmed" when it holds in every finished setting,
    "contradicted" when in none, "mixed" otherwise, "not yet available"
    without a finished pair.
  """
  results = []
  for claim in settings.CLAIMS if claims is None else claims:
    sign = 1.0 if claim.higher_is_better else -1.0
    comparisons = []
    for group, dataset, setting in settings_:
      if group != claim.group:
        continue
      values = []
      for arm in (claim.arm, claim.other):
        rows = finals.get((group, dataset, setting, arm), {})
        values.append({seed: float(r[claim.metric])
                       for seed, r in sorted(rows.items())
                       if r.get(claim.metric) is not None and
                       math.isfinite(float(r[claim.metric]))})
      test = paired_test(values[0], values[1],
                         null_difference=-sign * claim.tolerance)
      if not test.n:
        outcome = "not available"
      else:
        margin = sign * test.difference.mean
        holds = margin >= -claim.tolerance if claim.tolerance else margin > 0
        outcome = "confirms" if holds else "contradicts"
      comparisons.append(Comparison(dataset, setting, values[0], values[1],
                                    test, outcome))
    outcomes = {c.outcome for c in comparisons} - {"not available"}
    verdict = ("not yet available" if not outcomes else
               "confirmed" if outcomes == {"confirms"} else
               "contradicted" if outcomes == {"contradicts"} else "mixed")
    results.append(ClaimResult(claim, verdict, comparisons))
  return results


# --------------------------------------------------------------------------
# Formatting.


def _num(x: Optional[float], digits: int = 2) -> str:
  if x is None or not math.isfinite(x):
    return "—"
  return f"{x:,.{digits}f}".replace("-", "−")


def _signed(x: Optional[float], digits: int = 2) -> str:
  if x is None or not math.isfinite(x):
    return "—"
  return ("+" if x >= 0 else "") + _num(x, digits)


def _sci(x: Optional[float]) -> str:
  if x is None or not math.isfinite(x):
    return "—"
  return f"{x:.3g}".replace("-", "−")


# Metrics shown to three significant digits: they span orders of magnitude.
_SCIENTIFIC = frozenset(("grad_variance", settings.BIAS_METRIC,
                         settings.BIAS_NOISE_METRIC))


def _fmt(metric: str):
  return _sci if metric in _SCIENTIFIC else _num


def _signed_in(fmt, x: Optional[float]) -> str:
  """``x`` written by ``fmt``, with its sign (a difference)."""
  text = fmt(x)
  return text if text == "—" or text.startswith("−") else "+" + text


def _mean_se_cell(stats: Stats, metric: str) -> str:
  fmt = _fmt(metric)
  if not stats.n:
    return "—"
  if stats.se is None:
    return fmt(stats.mean)
  return f"{fmt(stats.mean)} ± {fmt(stats.se)}"


def _duration(seconds: Optional[float]) -> str:
  if seconds is None:
    return "—"
  if seconds < 120:
    return f"{seconds:.0f} s"
  if seconds < 7200:
    return f"{seconds / 60:.0f} min"
  return f"{seconds / 3600:.1f} h"


def _rel(path: str, start: str) -> str:
  return os.path.relpath(os.path.abspath(path),
                         os.path.abspath(start)).replace(os.sep, "/")


def _setting(setting: str) -> str:
  return settings.SETTING_LABELS.get(setting, setting)


def _short_commit(commit: str) -> str:
  head, _, rest = commit.partition("+")
  return head[:12] + (f" ({rest})" if rest else "")


def _machine_key(machine: Mapping[str, Any]) -> Tuple:
  return (machine.get("cpu_model"), machine.get("usable_cores"),
          tuple(machine.get("gpus") or ()), machine.get("tensorflow"))


def _status_cell(state: RunState) -> str:
  done, target = state.steps_done, state.run.steps
  status = state.status
  if status == "done":
    row = state.final_row()
    extra = f" (row at {row['step']:,})" if row["step"] != target else ""
    text = f"done, {target:,}{extra}"
  elif status == "pending":
    return "**pending** (not started)"
  elif status == "running":
    text = f"**in progress** at {done:,} / {target:,} (running when recorded)"
  elif status == "failed":
    code = state.launches[-1].get("returncode")
    text = f"**stopped** at {done:,} / {target:,} (exit code {code})"
  else:
    text = f"**in progress** at {done:,} / {target:,} (stopped)"
  if state.reused:
    where = state.reused_from
    text += (" (reused: made outside the study" +
             ("" if os.path.isabs(where) else f", `{where}`") + ")")
  return text


def _metric_cell(state: RunState, key: str) -> str:
  row = state.latest_row()
  if row is None or row.get(key) is None:
    return "—"
  text = _fmt(key)(row[key])
  return text if state.complete else f"*{text}*†"


def _ms_per_step(state: RunState) -> Optional[float]:
  if state.summary and state.summary.get("ms_per_step"):
    if state.summary.get("steps", 0) >= state.steps_done:
      return state.summary["ms_per_step"]
  last = state.rows[-1] if state.rows else None
  if last and last.get("train_time_sec") and last["step"]:
    return 1e3 * last["train_time_sec"] / last["step"]
  if state.summary and state.summary.get("ms_per_step"):
    return state.summary["ms_per_step"]
  return None


def _config_key(state: RunState) -> Tuple[str, str, str, str]:
  v = state.run.variant
  return (v.group, state.run.dataset, v.setting, v.arm)


def _by_config(states: Sequence[RunState]
              ) -> Dict[Tuple[str, str, str, str], List[RunState]]:
  out = {}
  for s in states:
    out.setdefault(_config_key(s), []).append(s)
  return out


def finals_of(states: Sequence[RunState]):
  """(group, dataset, setting, arm) -> seed -> final row of finished runs;
  and every (group, dataset, setting) in the study's order."""
  finals = {}
  for s in states:
    if s.complete:
      finals.setdefault(_config_key(s), {})[s.run.seed] = s.final_row()
  settings_ = list(dict.fromkeys(
      (s.run.group, s.run.dataset, s.run.variant.setting) for s in states))
  return finals, settings_


def _final_values(states: Sequence[RunState], key: str) -> List[float]:
  values = []
  for s in states:
    if s.complete:
      value = s.final_row().get(key)
      if value is not None and math.isfinite(float(value)):
        values.append(float(value))
  return values


# --------------------------------------------------------------------------
# Figures.


def _step_label(x: float, _=None) -> str:
  """A step count as an axis label: 0, 500, 25k, 1M, 1.5M."""
  for scale, suffix in ((1e6, "M"), (1e3, "k")):
    if abs(x) >= scale:
      return f"{x / scale:g}{suffix}"
  return f"{x:g}"


def _step_formatter():
  from matplotlib import ticker  # pylint: disable=g-import-not-at-top
  return ticker.FuncFormatter(_step_label)


def _figure(group: Group, states: Sequence[RunState], key: str, label: str,
            log: bool, path: str) -> bool:
  """Curves of ``key`` per setting (panels) and arm (lines): the mean over
  seeds with a band from their minimum to their maximum; False if no data."""
  def usable(row, state):
    value = row.get(key)
    return (value is not None and 0 < row["step"] <= state.run.steps and
            math.isfinite(float(value)) and (not log or value > 0))

  if not any(usable(r, s) for s in states for r in s.rows):
    return False
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  panels = list(dict.fromkeys((s.run.dataset, s.run.variant.setting)
                              for s in states))
  arms = list(dict.fromkeys(v.arm for v in settings.STUDY
                            if v.group == group.name))
  colors = {arm: f"C{i}" for i, arm in enumerate(arms)}
  with plt.style.context("default"):
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(max(4.6 * cols, 6.0),
                                                  3.4 * rows + 0.3),
                             squeeze=False)
    for ax, panel in zip(axes.flat, panels):
      for arm in arms:
        runs = [s for s in states if (s.run.dataset, s.run.variant.setting)
                == panel and s.run.variant.arm == arm]
        per_step = {}
        for s in runs:
          # From the first evaluation after step 0 (the initial bounds would
          # squeeze the curves).
          for r in s.rows:
            if usable(r, s):
              per_step.setdefault(r["step"], {})[s.run.seed] = float(r[key])
        if not per_step:
          continue
        steps = sorted(per_step)
        values = [list(per_step[x].values()) for x in steps]
        mean = [math.fsum(v) / len(v) for v in values]
        seeds_with_data = len({seed for x in steps for seed in per_step[x]})
        incomplete = any(not s.complete for s in runs if s.rows)
        color = colors[arm]
        ax.plot(steps, mean, color=color,
                linestyle="--" if incomplete else "-", marker=".",
                label=f"{runs[0].run.variant.label} ({seeds_with_data} seed"
                f"{'s' if seeds_with_data > 1 else ''})"
                + (" [in progress]" if incomplete else ""))
        if any(len(v) > 1 for v in values):
          ax.fill_between(steps, [min(v) for v in values],
                          [max(v) for v in values], color=color, alpha=0.2,
                          linewidth=0)
      ax.set_title(f"{panel[0]}, {_setting(panel[1])}")
      ax.set_xlabel("step")
      ax.xaxis.set_major_formatter(_step_formatter())
      ax.set_ylabel(label)
      if ax.lines:
        if log:
          ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
      else:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.text(0.5, 0.5, "no data yet", ha="center", va="center",
                transform=ax.transAxes, color="grey")
    for ax in list(axes.flat)[len(panels):]:
      ax.axis("off")
    # Two lines: a one-panel figure is too narrow for title and metric.
    fig.suptitle(f"{group.title}\n{label} (mean over seeds; band: min to "
                 f"max)", fontsize=10)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with warnings.catch_warnings():
      # "Creating legend with loc='best' can be slow": it is not here.
      warnings.filterwarnings("ignore", message=".*loc=\"best\".*")
      fig.tight_layout()
      # No "Software" stamp: the same curves give the same bytes.
      fig.savefig(path, dpi=90, metadata={"Software": None})
    plt.close(fig)
  return True


# --------------------------------------------------------------------------
# The report.


def load_states(options: Options, runs: Sequence[Run]) -> List[RunState]:
  """Every run's state from its record (pending when it has none)."""
  return [records.load_record(r, options.records_dir) for r in runs]


def write_report(options: Options, runs: Optional[Sequence[Run]] = None
                ) -> str:
  """Writes the report and its figures from the records; returns the text.

  Args:
    options: the driver's options (report, figures and records paths, and
      the study's steps, data sets and seeds).
    runs: the study's runs (default: those of ``options``).
  """
  if runs is None:
    runs = settings.study_runs(options)
  states = load_states(options, runs)
  text = render(options, states)
  os.makedirs(options.report_dir, exist_ok=True)
  tmp = options.report + ".tmp"
  with open(tmp, "w") as f:
    f.write(text)
  os.replace(tmp, options.report)
  return text


def render(options: Options, states: Sequence[RunState]) -> str:
  """The report's text (writes the figures)."""
  report_dir = options.report_dir
  records_link = _rel(options.records_dir, report_dir)
  machines = {}
  for s in states:
    for launch in s.launches:
      if launch.get("machine"):
        machines.setdefault(_machine_key(launch["machine"]),
                            launch["machine"])
  machine_ids = {k: f"M{i + 1}" for i, k in enumerate(machines)}
  finals, settings_ = finals_of(states)
  claims = evaluate_claims(finals, settings_)
  done = sum(s.complete for s in states)
  lines = [
      TITLE, "",
      f"Written by `python -m experiments.study` from the run records in "
      f"[`{records_link}/`]({records_link}/) (one folder per run: its "
      f"`metrics.jsonl`, `summary.json`, `config.json`, `machine.json` and "
      f"`status.json`); do not edit by hand. "
      f"`python -m experiments.study --report_only` rewrites it, byte for "
      f"byte, from the records alone (docs/study.md). {done} of "
      f"{len(states)} runs are finished.",
      "",
      "Every number of our runs is the row at the run's target step of its "
      "record's `metrics.jsonl` (timings: `summary.json`; wall time and "
      "machine: `machine.json`). Bounds are in nats, higher is better; "
      "gradient variance is the encoder gradient variance of the binaries "
      "(EMA 0.999 of g and g², mean over encoder parameters) at the end, "
      "each run on its own trajectory. Tables give the mean ± standard "
      "error over the seeds that finished (n of them; the standard error is "
      "the sample standard deviation over √n, none with one seed). A value "
      "in *italics*† comes from an unfinished run, at the step shown in its "
      "status, and is used neither in the means nor in the claims.",
      "",
      "## Claims",
      "",
      "Each claim is checked in every setting (data set, network, layers or "
      "pairs) of its table where both estimators have finished seeds. The "
      "per-seed differences (first estimator − second) are matched by seed; "
      "the sign of their mean says whether the claim holds there, and a "
      f"paired t-test over those seeds (`scipy.stats.ttest_rel`, two-sided, "
      f"α = {ALPHA}) says whether the difference is significant at the "
      "seeds available. With one seed there is no test (\"not testable, 1 "
      "seed\"). A claim with a tolerance (\"no more than 1 nat below\") "
      "tests the difference against minus the tolerance.",
      "",
  ]
  for result in claims:
    lines += _claim_lines(result)
  lines += ["", "## Machines", ""]
  if machines:
    for key, machine in machines.items():
      lines.append(f"- {machine_ids[key]}: {hardware.machine_label(machine)} "
                   f"(host {machine.get('host')}).")
  else:
    lines.append("- No run has been launched by the driver yet.")
  if any(s.reused for s in states):
    lines.append("- n/r: not recorded (a reused run made outside the "
                 "driver).")
  lines.append("")
  for number, group in enumerate(settings.GROUPS, 1):
    lines += _group_section(number, group,
                            [s for s in states if s.run.group == group.name],
                            machine_ids, options, records_link)
  return "\n".join(lines).rstrip("\n") + "\n"


def _claim_lines(result: ClaimResult) -> List[str]:
  c = result.claim
  partial = result.verdict != "not yet available" and any(
      cmp.outcome == "not available" for cmp in result.comparisons)
  verdict = result.verdict + (" so far" if partial else "")
  lines = [f"- **{verdict}** — {c.text} ({c.source}): {result.summary()}."]
  for cmp in result.available:
    t = cmp.test
    arm = mean_se(t.arm_values)
    other = mean_se(t.other_values)
    diff = t.difference
    diff_text = (_signed(diff.mean, 2) if c.metric != "grad_variance" else
                 ("+" if diff.mean >= 0 else "") + _sci(diff.mean))
    if diff.se is not None:
      diff_text += f" ± {_fmt(c.metric)(diff.se)}"
    seeds = ", ".join(map(str, t.seeds))
    lines.append(
        f"  - {cmp.dataset}, {_setting(cmp.setting)}: "
        f"{_mean_se_cell(arm, c.metric)} vs {_mean_se_cell(other, c.metric)}"
        f" (seed{'s' if t.n > 1 else ''} {seeds}); difference {diff_text}; "
        f"{t.describe()}; "
        f"{'holds' if cmp.outcome == 'confirms' else 'does not hold'}.")
  return lines


def _pending_text(states: Sequence[RunState]) -> str:
  """Pending runs, grouped by configuration: "dynamic_mnist-linear-disarm
  (seeds 1, 2)"."""
  grouped = {}
  for s in states:
    v = s.run.variant
    grouped.setdefault(f"{s.run.dataset}-{v.setting}-{v.arm}",
                       []).append(s.run.seed)
  return "; ".join(f"{k} (seed{'s' if len(v) > 1 else ''} "
                   f"{', '.join(map(str, v))})" for k, v in grouped.items())


def _group_section(number: int, group: Group, states: Sequence[RunState],
                   machine_ids: Mapping[Tuple, str], options: Options,
                   records_link: str) -> List[str]:
  if not states:
    return []
  steps = sorted({s.run.steps for s in states})
  seeds = sorted({s.run.seed for s in states})
  evals = sorted({s.run.eval_every for s in states})
  done = [s for s in states if s.complete]
  walls = [s.wall_time() for s in states]
  known = [w for w in walls if w is not None]
  total_wall = _duration(sum(known)) if known else "none yet"
  used = sorted({machine_ids[_machine_key(s.machine())] for s in states
                 if s.machine()} | ({"n/r"} if any(s.reused for s in states)
                                    else set()))
  commits = list(dict.fromkeys(c for s in states for c in s.git_commits()))
  in_progress = [s for s in states if s.exists and not s.complete]
  pending = [s for s in states if not s.exists]
  lines = [
      f"## {number}. {group.title}", "", group.description, "",
      f"- Steps: {', '.join(f'{n:,}' for n in steps)} per run, evaluated "
      f"every {', '.join(f'{n:,}' for n in evals)} steps (the papers: "
      f"{settings.PAPER_STEPS:,}).",
      f"- Seeds: {', '.join(map(str, seeds))}.",
      f"- Runs finished: {len(done)} of {len(states)}.",
      "- In progress (started, not finished): " + ("; ".join(
          f"{s.run.short_name} at step {s.steps_done:,} of "
          f"{s.run.steps:,}" + (" (running when recorded)" if s.running
                                else " (stopped)" if s.status != "failed"
                                else " (stopped: exit code "
                                f"{s.launches[-1].get('returncode')})")
          for s in in_progress) or "none") + ".",
      "- Pending (not started): " + (_pending_text(pending) or "none") + ".",
      f"- Wall time: {total_wall} in all (sum over runs, training and "
      f"evaluation, finished or not). A run's wall time counts each launch "
      f"from start to end, including time it shared the CPU with other runs "
      f"or was paused (a pause inside a training call also lengthens "
      f"`train ms/step`); docs/performance.md has the uncontended "
      f"step times.",
      f"- Machine: {', '.join(used) if used else 'none yet'} (see Machines).",
      f"- Code: git commit{'s' if len(commits) > 1 else ''} "
      f"{', '.join(f'`{_short_commit(c)}`' for c in commits)}."
      if commits else "- Code: no launch recorded yet.",
      "",
  ]
  lines += _summary_table(group, states)
  lines += _runs_table(group, states, machine_ids, records_link)
  for reference in settings.REFERENCES:
    if reference.group == group.name:
      lines += _reference_lines(reference, states)
  if group.name == "binary":
    lines += ["The DisARM paper's numbers are compared at its length, "
              f"{settings.PAPER_STEPS:,} steps, in table "
              f"{[g.name for g in settings.GROUPS].index('paper') + 1}.", ""]
  notes = [(s.run.name, settings.NOTES[s.run.name]) for s in states
           if s.run.name in settings.NOTES]
  for name, note in notes:
    lines.append(f"- Note on `{name}`: {note}")
  if notes:
    lines.append("")
  figures = []
  for key, label, log in group.curves:
    # Metric keys may be paths ("bias_check/relative_error"); a figure is
    # one file.
    path = os.path.join(options.figures_path,
                        f"{group.name}_{key.replace('/', '_')}.png")
    if _figure(group, states, key, label, log, path):
      figures.append((label, path))
    elif os.path.exists(path):
      os.remove(path)  # No data any more: no stale figure.
  if figures:
    lines += [f"![{group.name}: {label}]({_rel(path, options.report_dir)})"
              for label, path in figures]
  else:
    lines.append("Figures appear here once runs have written metrics.")
  lines.append("")
  return lines


def _evaluations(states: Sequence[RunState]) -> str:
  """Objective evaluations per estimate, as the binary recorded them in
  config.json from the estimator's declared cost ("—" before any run)."""
  for state in states:
    config = state.config or {}
    if "evaluations_per_layer" in config:
      layers = config.get("num_layers", 1)
      per = config["evaluations_per_layer"]
      return f"{per} per layer" if layers > 1 else str(per)
    if "evaluations" in config:
      return str(config["evaluations"])
  return "—"


def _table_metrics(group: Group) -> List[Tuple[str, str]]:
  """The common columns with the group's own before the gradient variance."""
  *bounds, variance = TABLE_METRICS
  return bounds + list(group.extra_metrics) + [variance]


def _summary_table(group: Group, states: Sequence[RunState]) -> List[str]:
  metrics = _table_metrics(group)
  header = (["data set", "setting", "estimator", "evaluations", "n"] +
            [title for _, title in metrics] +
            ["grad variance min–max", "train ms/step", "wall time"])
  lines = ["Finished seeds, mean ± standard error:", "",
           "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for key, runs in _by_config(states).items():
    v = runs[0].run.variant
    done = [s for s in runs if s.complete]
    cells = [runs[0].run.dataset, _setting(v.setting), v.label,
             _evaluations(runs), f"{len(done)} of {len(runs)}"]
    for metric, _ in metrics:
      cells.append(_mean_se_cell(mean_se(_final_values(done, metric)),
                                 metric))
    var = mean_se(_final_values(done, "grad_variance"))
    cells.append(f"{_sci(var.low)} – {_sci(var.high)}" if var.n > 1 else "—")
    ms = [m for m in (_ms_per_step(s) for s in done) if m is not None]
    cells.append(_num(math.fsum(ms) / len(ms), 1) if ms else "—")
    walls = [w for w in (s.wall_time() for s in runs) if w is not None]
    cells.append(_duration(math.fsum(walls)) if walls else "—")
    lines.append("| " + " | ".join(cells) + " |")
  return lines + [""]


def _runs_table(group: Group, states: Sequence[RunState],
                machine_ids: Mapping[Tuple, str],
                records_link: str) -> List[str]:
  metrics = _table_metrics(group)
  header = (["run", "status (steps)"] + [title for _, title in metrics] +
            ["train ms/step", "wall time", "machine", "record"])
  lines = ["Every run:", "", "| " + " | ".join(header) + " |",
           "|" + "---|" * len(header)]
  for s in states:
    machine = ("n/r" if s.reused else
               machine_ids[_machine_key(s.machine())] if s.machine() else "—")
    link = (f"[{s.run.name}]({records_link}/{s.run.group}/"
            f"{s.run.short_name}/)" if s.exists else "—")
    cells = ([s.run.short_name, _status_cell(s)] +
             [_metric_cell(s, m) for m, _ in metrics] +
             [_num(_ms_per_step(s), 1) if s.exists else "—",
              _duration(s.wall_time()), machine, link])
    lines.append("| " + " | ".join(cells) + " |")
  return lines + [""]


def _reference_lines(reference: settings.Reference,
                     states: Sequence[RunState]) -> List[str]:
  """A table's runs beside a paper's published numbers."""
  by_config = _by_config(states)
  group = reference.group
  if not any((group,) + key[:3] in by_config for key in reference.values):
    return [reference.protocol, ""] if reference.protocol else []
  lines = [
      f"Beside {reference.paper}: {reference.setup}, "
      f"{reference.steps:,} steps. *Theirs* are the paper's numbers, not "
      "our measurements; ours are the mean over the finished seeds, or an "
      "unfinished run's latest value in *italics*† at the step shown.", "",
      "| data set | estimator | metric | ours | our steps | theirs | their "
      "steps | ours − theirs |", "|---|---|---|---|---|---|---|---|"]
  gaps, waiting = [], []
  metric_titles = dict(TABLE_METRICS)
  shorter = False
  for (dataset, setting, arm, metric), theirs in reference.values.items():
    runs = by_config.get((group, dataset, setting, arm))
    if not runs:
      continue
    label = runs[0].run.variant.label
    fmt = _fmt(metric)
    done = [s for s in runs if s.complete]
    values = _final_values(done, metric)
    if values:
      ours = math.fsum(values) / len(values)
      steps = runs[0].run.steps
      ours_text, steps_text = fmt(ours), f"{steps:,}"
      diff_text = _signed_in(fmt, ours - theirs)
      shorter = shorter or steps < reference.steps
      if (reference.gap_nats is not None and steps >= reference.steps and
          abs(ours - theirs) > reference.gap_nats):
        gaps.append((dataset, label, metric, ours, theirs, done))
    else:
      latest = max(runs, key=lambda s: s.steps_done)
      row = latest.latest_row()
      value = row.get(metric) if row else None
      if value is not None:
        ours_text = f"*{fmt(value)}*†"
        steps_text = f"*{row['step']:,}*† of {latest.run.steps:,}"
        diff_text = f"*{_signed_in(fmt, value - theirs)}*†"
      else:
        ours_text, steps_text, diff_text = "—", "—", "—"
      waiting.append(f"{dataset} {label}")
    lines.append(f"| {dataset} | {label} | {metric_titles[metric]} | "
                 f"{ours_text} | {steps_text} | {fmt(theirs)} (theirs) | "
                 f"{reference.steps:,} | {diff_text} |")
  lines.append("")
  waiting = list(dict.fromkeys(waiting))
  if waiting:
    lines += [f"Not finished yet: {', '.join(waiting)}; the difference is "
              "stated here once they are.", ""]
  if shorter:
    lines += [f"Our runs train fewer steps than the paper's "
              f"{reference.steps:,}: the differences include the shorter "
              "training, so they are no test of the paper's numbers.", ""]
  for dataset, label, metric, ours, theirs, done in gaps:
    names = [s.run.name for s in done]
    notes = [settings.NOTES[n] for n in names if n in settings.NOTES]
    explanation = (" ".join(notes) if notes else
                   "**Explanation pending**: no note yet for "
                   + ", ".join(f"`{n}`" for n in names) +
                   " in `NOTES` of `experiments/study/settings.py`.")
    lines += [f"**A gap of more than {reference.gap_nats:g} nat remains "
              f"at {reference.steps:,} steps**: {dataset} {label}, "
              f"{metric_titles[metric]}: ours {_num(ours)}, theirs "
              f"{_num(theirs)} ({_signed(ours - theirs)} nats). "
              f"{explanation}", ""]
  at_length = [k for k in reference.values
               if _final_values([s for s in by_config.get(
                   (group,) + k[:3], [])
                                 if s.complete and s.run.steps >= (
                                     reference.steps)], k[3])]
  if (reference.gap_nats is not None and at_length and not gaps and
      not waiting):
    lines += [f"Every number compared is within {reference.gap_nats:g} nat "
              f"of the paper's at {reference.steps:,} steps.", ""]
  if reference.protocol:
    lines += [reference.protocol, ""]
  return lines
