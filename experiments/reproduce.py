r"""Runs the estimator-comparison study of issue 8 and writes docs/results.md.

The study (table :data:`STUDY`) trains VAEs with the project's own binaries,
one subprocess per run, and compares the estimators the seed papers compare:

1. ``binary``: DisARM vs ARM vs RLOO (2 objective evaluations each), one
   stochastic layer of 200 Bernoulli units, dynamic MNIST, Fashion-MNIST and
   Omniglot, linear and nonlinear networks, official flags
   (``--demean_input --initialize_with_bias``).
2. ``multilayer``: DisARM vs RLOO with 2 and 4 linear stochastic layers on
   dynamic MNIST.
3. ``multisample``: local DisARM with P pairs vs VIMCO with K = 2P samples
   (2P evaluations each) on dynamic MNIST, nonlinear.
4. ``categorical``: V=20 variables of C=10 categories on dynamic MNIST:
   RLOO (K = C), RLOO (K = 2), ARSM, ARSM+, stick-breaking DisARM.

Usage::

    export TF_DISCRETE_MANUAL_DIR=../shared/data
    nohup python -m experiments.reproduce > runs/study.log 2>&1 &
    python -m experiments.reproduce --report_only     # report from what exists
    python -m experiments.reproduce --dry_run         # the commands, no run

Every run has its own logdir ``<--root>/<group>/<dataset>-<setting>-<arm>-
seed<seed>`` with the binary's outputs (``metrics.jsonl``,
``summary.json``, ...), ``run.log`` (the binary's stdout and stderr, one
header line per launch) and ``machine.json`` (one entry per launch: CPU, core
count, GPU, TensorFlow version, git commit, command, start, end, exit code).
The driver is resumable: a run whose ``summary.json`` reports at least its
target steps is skipped; an unfinished one is relaunched with the same
command (the binary resumes from its last checkpoint; a raised step target
continues the run). A run held by a live process (``reproduce.lock``) is left
alone, so a second driver never trains the same run twice.

A finished run made outside the study with exactly the study's settings (for
example the README's 100,000-step DisARM runs) is reused instead of being
trained again when it lies under ``--reuse_from``; the report names its
directory.

The report (``--report``) and its figures are regenerated after every run and
at the end; every number in it is read from a run's ``metrics.jsonl`` (the
row at the target step) or ``summary.json``; incomplete runs are shown with
the step they reached and are never used for the claims.
"""

import dataclasses
import datetime
import fnmatch
import json
import math
import os
import socket
import subprocess
import sys
import time
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from absl import app
from absl import flags

from experiments import hardware

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINARY = "experiments.binary_vae"
CATEGORICAL = "experiments.categorical_vae"
METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
CONFIG_FILE = "config.json"
MACHINE_FILE = "machine.json"
RUN_LOG = "run.log"
LOCK_FILE = "reproduce.lock"
LAUNCH_HEADER = "=== reproduce: launch"
# Flags of the binaries that may differ between a reused run and the study
# (cadences, data paths, placement): the binaries accept them changed on
# resume too.
NOT_COMPARED = ("num_steps", "logdir", "eval_every", "checkpoint_every",
                "log_every", "data_dir", "manual_dir", "strategy", "tpu",
                "jit_compile")

# --------------------------------------------------------------------------
# The study.

OFFICIAL = {"demean_input": True, "initialize_with_bias": True}
CATEGORICAL_20X10 = dict(encoder_type="nonlinear", num_variables=20,
                         num_categories=10, one_hot=True, batch_size=200,
                         **OFFICIAL)
# Pairs of the multi-sample comparison: local DisARM with P pairs (a P-sample
# bound, 2P evaluations) vs VIMCO with K = 2P samples (2P evaluations).
MULTISAMPLE_PAIRS = (1, 5)


@dataclasses.dataclass(frozen=True)
class Group:
  """A table of the report: runs compared on the same data and schedule."""
  name: str
  title: str
  datasets: Tuple[str, ...]
  default_steps: int
  eval_every: int
  description: str
  seeds: Tuple[int, ...] = (0, 1, 2)
  # Curves drawn per setting: (metrics.jsonl key, axis label, log scale).
  curves: Tuple[Tuple[str, str, bool], ...] = (
      ("train_elbo", "train ELBO (nats)", False),
      ("grad_variance", "encoder gradient variance", True))


@dataclasses.dataclass(frozen=True)
class Variant:
  """One configuration of the study (run once per data set and seed).

  ``setting`` names what the arms of a comparison share (the network, the
  number of layers, the number of pairs); ``arm`` names the estimator
  configuration compared within a setting.
  """
  group: str
  setting: str
  arm: str
  label: str
  evaluations: str
  module: str
  flags: Mapping[str, Any]
  # Data sets of this variant when not all of its group's.
  datasets: Optional[Tuple[str, ...]] = None


GROUPS = (
    Group("binary",
          "Binary VAE, one stochastic layer: DisARM vs ARM vs RLOO",
          ("dynamic_mnist", "fashion_mnist", "omniglot"), 100_000, 10_000,
          "200 Bernoulli latents, batch 50, official flags "
          "(`--demean_input --initialize_with_bias`); every estimator uses 2 "
          "objective evaluations per step (DisARM and ARM: one antithetic "
          "pair; RLOO: K = 2 samples). Decoder and prior are trained on "
          "those same samples (the binary's default "
          "`--decoder_grad=estimator_samples`, the same for every "
          "estimator); the papers' code uses a separate third sample."),
    Group("multilayer",
          "Multi-layer binary VAE: DisARM vs RLOO, 2 and 4 stochastic layers",
          ("dynamic_mnist",), 100_000, 10_000,
          "Stochastic layers of 200 Bernoulli units linked by linear maps "
          "(`--encoder_type=linear --num_layers=L`), batch 50, official "
          "flags; 2 evaluations per layer for both estimators (one pair, or "
          "K = 2 RLOO samples), layers estimated one at a time. Decoder and "
          "prior gradients from the estimators' samples (the binary's "
          "default), as in table 1."),
    Group("multisample",
          "Multi-sample bound: local DisARM vs VIMCO at equal evaluations",
          ("dynamic_mnist",), 100_000, 10_000,
          "Nonlinear network, one stochastic layer, batch 50, official "
          "flags. Equal evaluations: `--num_pairs=P` for both, i.e. local "
          "DisARM with P antithetic pairs (training the P-sample bound over "
          "the first members, 2P evaluations) against VIMCO with K = 2P "
          "independent samples (training the 2P-sample bound, 2P "
          "evaluations). The two train different bounds, so the common "
          "yardstick of the claim is the test 100-sample bound. Decoder and "
          "prior are trained on the same multi-sample bound (as in the "
          "papers' code).",
          curves=(("test_iwae", "test 100-sample bound (nats)", False),
                  ("train_objective", "training multi-sample bound (nats)",
                   False),
                  ("grad_variance", "encoder gradient variance", True))),
    Group("categorical",
          "Categorical VAE, 20 variables x 10 categories: RLOO, ARSM, ARSM+, "
          "DisARM-SB",
          ("dynamic_mnist",), 50_000, 5_000,
          "`experiments.categorical_vae`, nonlinear networks "
          "(784-512-256-200), one-hot decoder input, batch 200, official "
          "flags, decoder trained on a separate sample (the binary's "
          "default, the same for every estimator). Evaluations per step: "
          "RLOO K = C = 10 (its default) and K = 2, ARSM and ARSM+ 46 "
          "(distinct pseudo-actions), stick-breaking DisARM 2.",
          seeds=(0,)),
    Group("paper",
          "The papers' length: 1,000,000 steps, nonlinear, one stochastic "
          "layer",
          ("dynamic_mnist", "fashion_mnist", "omniglot"), 1_000_000, 25_000,
          "The official DisARM README command, unchanged but for the module "
          "name, run to the papers' 1,000,000 steps: nonlinear DisARM on all "
          "three data sets, RLOO (K = 2) and ARM on dynamic MNIST. Batch 50, "
          "`--demean_input --initialize_with_bias`, decoder and prior "
          "trained on the estimator's samples.",
          seeds=(0,)),
)
GROUP_BY_NAME = {g.name: g for g in GROUPS}

STUDY = (
    # 1. One stochastic layer, 2 evaluations each.
    Variant("binary", "linear", "disarm", "DisARM", "2", BINARY,
            dict(grad_type="disarm", encoder_type="linear", **OFFICIAL)),
    Variant("binary", "linear", "arm", "ARM", "2", BINARY,
            dict(grad_type="arm", encoder_type="linear", **OFFICIAL)),
    Variant("binary", "linear", "rloo", "RLOO (K=2)", "2", BINARY,
            dict(grad_type="rloo", encoder_type="linear", **OFFICIAL)),
    Variant("binary", "nonlinear", "disarm", "DisARM", "2", BINARY,
            dict(grad_type="disarm", encoder_type="nonlinear", **OFFICIAL)),
    Variant("binary", "nonlinear", "arm", "ARM", "2", BINARY,
            dict(grad_type="arm", encoder_type="nonlinear", **OFFICIAL)),
    Variant("binary", "nonlinear", "rloo", "RLOO (K=2)", "2", BINARY,
            dict(grad_type="rloo", encoder_type="nonlinear", **OFFICIAL)),
    # 2. Two and four stochastic layers.
    Variant("multilayer", "L2", "disarm", "DisARM", "2 per layer", BINARY,
            dict(grad_type="disarm", encoder_type="linear", num_layers=2,
                 **OFFICIAL)),
    Variant("multilayer", "L2", "rloo", "RLOO (K=2)", "2 per layer", BINARY,
            dict(grad_type="rloo", encoder_type="linear", num_layers=2,
                 **OFFICIAL)),
    Variant("multilayer", "L4", "disarm", "DisARM", "2 per layer", BINARY,
            dict(grad_type="disarm", encoder_type="linear", num_layers=4,
                 **OFFICIAL)),
    Variant("multilayer", "L4", "rloo", "RLOO (K=2)", "2 per layer", BINARY,
            dict(grad_type="rloo", encoder_type="linear", num_layers=4,
                 **OFFICIAL)),
    # 3. Multi-sample bound, equal evaluations (2P).
    *(v for p in MULTISAMPLE_PAIRS for v in (
        Variant("multisample", f"P{p}", "local_disarm",
                f"local DisARM ({p} pair{'s' if p > 1 else ''})", str(2 * p),
                BINARY, dict(grad_type="local_disarm",
                             encoder_type="nonlinear", num_pairs=p,
                             **OFFICIAL)),
        Variant("multisample", f"P{p}", "vimco", f"VIMCO (K={2 * p})",
                str(2 * p), BINARY,
                dict(grad_type="vimco", encoder_type="nonlinear",
                     num_pairs=p, **OFFICIAL)))),
    # 4. Categorical 20x10.
    Variant("categorical", "20x10", "rloo", "RLOO (K=10)", "10", CATEGORICAL,
            dict(grad_type="rloo", **CATEGORICAL_20X10)),
    Variant("categorical", "20x10", "rloo_k2", "RLOO (K=2)", "2", CATEGORICAL,
            dict(grad_type="rloo", num_samples=2, **CATEGORICAL_20X10)),
    Variant("categorical", "20x10", "arsm", "ARSM", "46", CATEGORICAL,
            dict(grad_type="arsm", **CATEGORICAL_20X10)),
    Variant("categorical", "20x10", "arsm_plus", "ARSM+", "46", CATEGORICAL,
            dict(grad_type="arsm_plus", **CATEGORICAL_20X10)),
    Variant("categorical", "20x10", "disarm_sb", "DisARM-SB", "2",
            CATEGORICAL, dict(grad_type="disarm_sb", **CATEGORICAL_20X10)),
    # 5. The papers' length.
    Variant("paper", "nonlinear", "disarm", "DisARM", "2", BINARY,
            dict(grad_type="disarm", encoder_type="nonlinear", **OFFICIAL)),
    Variant("paper", "nonlinear", "rloo", "RLOO (K=2)", "2", BINARY,
            dict(grad_type="rloo", encoder_type="nonlinear", **OFFICIAL),
            datasets=("dynamic_mnist",)),
    Variant("paper", "nonlinear", "arm", "ARM", "2", BINARY,
            dict(grad_type="arm", encoder_type="nonlinear", **OFFICIAL),
            datasets=("dynamic_mnist",)),
)

SETTING_LABELS = {"linear": "linear", "nonlinear": "nonlinear", "L2": "L = 2",
                  "L4": "L = 4", "20x10": "20 x 10",
                  **{f"P{p}": f"P = {p} (2P = {2 * p} evaluations)"
                     for p in MULTISAMPLE_PAIRS}}

# Seed papers' headline numbers (DESIGN §4): train ELBO, dynamic
# binarization, nonlinear network, 1,000,000 steps. Theirs, not ours.
PAPER_STEPS = 1_000_000
PAPER_TRAIN_ELBO = {
    ("binary", "dynamic_mnist", "nonlinear", "disarm"): -98.0,
    ("binary", "fashion_mnist", "nonlinear", "disarm"): -234.0,
    ("binary", "omniglot", "nonlinear", "disarm"): -109.0,
}
PAPER_NOTE = (
    "*Theirs*: the seed papers' headline train ELBOs for the nonlinear "
    f"model (DESIGN §4; dynamic binarization, {PAPER_STEPS:,} steps): MNIST about −98, Fashion-MNIST about −234, "
    "Omniglot about −109; stronger later estimators (RODEO, double control "
    "variates) report MNIST about −97.2. They are not our measurements.")


@dataclasses.dataclass(frozen=True)
class Claim:
  """A paper claim checked on the study's finished runs.

  In every setting of ``group`` holding both arms, ``arm`` should be better
  than ``other`` on ``metric`` (higher, or lower when ``higher_is_better`` is
  False), or, with ``tolerance`` > 0 ("competitive"), no worse than
  ``other`` by more than ``tolerance``.
  """
  text: str
  source: str
  group: str
  arm: str
  other: str
  metric: str
  higher_is_better: bool = True
  tolerance: float = 0.0


DISARM_PAPER = "DisARM (Dong, Mnih, Tucker 2020)"
COUPLED_PAPER = "Coupled estimators (Dong, Mnih, Tucker 2021)"
CLAIMS = (
    Claim("DisARM reaches a higher train ELBO than ARM (2 evaluations each)",
          DISARM_PAPER, "binary", "disarm", "arm", "train_elbo"),
    Claim("DisARM reaches a higher train ELBO than RLOO (2 evaluations each)",
          DISARM_PAPER, "binary", "disarm", "rloo", "train_elbo"),
    Claim("DisARM's encoder gradient variance is lower than ARM's",
          DISARM_PAPER, "binary", "disarm", "arm", "grad_variance",
          higher_is_better=False),
    Claim("DisARM's encoder gradient variance is lower than RLOO's",
          DISARM_PAPER, "binary", "disarm", "rloo", "grad_variance",
          higher_is_better=False),
    Claim("With 2 and 4 stochastic layers, DisARM reaches a higher train "
          "ELBO than RLOO", DISARM_PAPER, "multilayer", "disarm", "rloo",
          "train_elbo"),
    Claim("With 2 and 4 stochastic layers, DisARM's encoder gradient "
          "variance is lower than RLOO's", DISARM_PAPER, "multilayer",
          "disarm", "rloo", "grad_variance", higher_is_better=False),
    Claim("Local DisARM beats VIMCO on the multi-sample bound at equal "
          "evaluations (test 100-sample bound)", DISARM_PAPER, "multisample",
          "local_disarm", "vimco", "test_iwae"),
    Claim("ARSM does worse than RLOO (K = C = 10) in train ELBO",
          COUPLED_PAPER, "categorical", "rloo", "arsm", "train_elbo"),
    Claim("ARSM+ (Rao-Blackwellized) does worse than RLOO (K = C = 10) in "
          "train ELBO", COUPLED_PAPER, "categorical", "rloo", "arsm_plus",
          "train_elbo"),
    Claim("Stick-breaking DisARM is competitive with RLOO at equal "
          "evaluations (K = 2): train ELBO no more than 1 nat below",
          COUPLED_PAPER, "categorical", "disarm_sb", "rloo_k2", "train_elbo",
          tolerance=1.0),
)

# --------------------------------------------------------------------------
# Runs.


@dataclasses.dataclass(frozen=True)
class Options:
  """What the driver does (the absl flags of :func:`main`)."""
  root: str = os.path.join("runs", "study")
  report: str = os.path.join("docs", "results.md")
  figures_dir: Optional[str] = None
  steps: Mapping[str, int] = dataclasses.field(default_factory=lambda: {
      g.name: g.default_steps for g in GROUPS})
  eval_every: Optional[int] = None
  only: Sequence[str] = ()
  datasets: Optional[Sequence[str]] = None
  seeds: Optional[Sequence[int]] = None
  dry_run: bool = False
  report_only: bool = False
  jobs: int = 1
  reuse_from: Sequence[str] = ("runs",)
  python: str = sys.executable
  invocation: str = "python -m experiments.reproduce"


@dataclasses.dataclass(frozen=True)
class Run:
  """One training run of the study: a variant on a data set with a seed."""
  variant: Variant
  dataset: str
  seed: int
  steps: int
  eval_every: int
  logdir: str  # As passed to the binary (relative to the repo when inside).

  @property
  def group(self) -> str:
    return self.variant.group

  @property
  def name(self) -> str:
    v = self.variant
    return f"{v.group}/{self.dataset}-{v.setting}-{v.arm}-seed{self.seed}"

  @property
  def path(self) -> str:
    return os.path.join(REPO_ROOT, self.logdir)

  def flag_values(self) -> Dict[str, Any]:
    """Every flag the study passes, the step target and cadences included."""
    return {"dataset": self.dataset, **self.variant.flags, "seed": self.seed,
            "num_steps": self.steps, "eval_every": self.eval_every,
            "checkpoint_every": self.eval_every,
            "log_every": min(1000, self.eval_every), "logdir": self.logdir}

  def command(self, python: str = sys.executable) -> List[str]:
    return [python, "-m", self.variant.module] + [
        _flag_arg(k, v) for k, v in self.flag_values().items()
        if v is not None]


def _flag_arg(name: str, value: Any) -> str:
  if isinstance(value, bool):
    return f"--{name}" if value else f"--no{name}"
  return f"--{name}={value}"


def _logdir_arg(path: str) -> str:
  """The logdir as given to the binaries: stable across invocations."""
  path = os.path.abspath(path)
  rel = os.path.relpath(path, REPO_ROOT)
  return path if rel.startswith("..") else rel


def study_runs(options: Options) -> List[Run]:
  """Every run of the study under ``options`` (datasets, seeds, steps)."""
  root = _logdir_arg(options.root)
  runs = []
  for group in GROUPS:
    datasets = tuple(options.datasets or group.datasets)
    for dataset in datasets:
      for variant in (v for v in STUDY if v.group == group.name):
        if variant.datasets and dataset not in variant.datasets:
          continue
        for seed in (group.seeds if options.seeds is None else
                     options.seeds):
          name = f"{dataset}-{variant.setting}-{variant.arm}-seed{seed}"
          runs.append(Run(
              variant, dataset, int(seed), int(options.steps[group.name]),
              int(options.eval_every or group.eval_every),
              os.path.join(root, group.name, name)))
  return runs


def select(runs: Sequence[Run], patterns: Sequence[str]) -> List[Run]:
  """Runs whose name or group matches a glob of ``patterns`` (all if none)."""
  if not patterns:
    return list(runs)
  return [r for r in runs
          if any(fnmatch.fnmatchcase(r.name, p) or
                 fnmatch.fnmatchcase(r.group, p) for p in patterns)]


# --------------------------------------------------------------------------
# What a run directory holds.


def read_json(path: str) -> Optional[Any]:
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def read_rows(logdir: str) -> List[Dict[str, Any]]:
  """metrics.jsonl rows in step order (a torn last line is skipped)."""
  rows = []
  try:
    with open(os.path.join(logdir, METRICS_FILE)) as f:
      for line in f:
        try:
          row = json.loads(line)
        except ValueError:
          continue
        if isinstance(row, dict) and "step" in row:
          rows.append(row)
  except OSError:
    pass
  return sorted(rows, key=lambda r: r["step"])


def _pid_alive(pid: int, logdir_arg: Optional[str] = None) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  cmdline = f"/proc/{pid}/cmdline"
  if logdir_arg and os.path.exists(cmdline):
    try:
      with open(cmdline, "rb") as f:
        args = f.read().decode(errors="replace").split("\0")
    except OSError:
      return True
    # A reused pid that is not this run's binary (or its driver) is stale.
    return any(logdir_arg in a for a in args) or any(
        "experiments.reproduce" in a for a in args)
  return True


def lock_holder(run: Run) -> Optional[Dict[str, Any]]:
  """The live lock of a run (another process trains it), or None."""
  lock = read_json(os.path.join(run.path, LOCK_FILE))
  if not isinstance(lock, dict):
    return None
  if lock.get("host") != socket.gethostname():
    return lock  # Another machine on a shared disk: assume it is alive.
  pid = lock.get("child_pid") or lock.get("pid")
  if pid and _pid_alive(int(pid), run.logdir if lock.get("child_pid")
                        else None):
    return lock
  return None


@dataclasses.dataclass
class RunState:
  """A run as found on disk."""
  run: Run
  source: str  # The directory the numbers come from.
  reused: bool
  summary: Optional[Dict[str, Any]]
  rows: List[Dict[str, Any]]
  launches: List[Dict[str, Any]]
  running: bool

  @property
  def steps_done(self) -> int:
    steps = [self.summary.get("steps", 0)] if self.summary else []
    steps += [self.rows[-1]["step"]] if self.rows else []
    return int(max(steps, default=0))

  @property
  def complete(self) -> bool:
    return bool(self.summary) and self.summary.get("steps", 0) >= (
        self.run.steps) and self.final_row() is not None

  @property
  def status(self) -> str:
    if self.complete:
      return "done"
    if self.running:
      return "running"
    if self.launches and self.launches[-1].get("returncode") not in (None, 0):
      return "failed"
    return "incomplete" if self.rows else "pending"

  def final_row(self) -> Optional[Dict[str, Any]]:
    """The metrics row at the target step (the last one before it for a run
    trained beyond its target without a row there), or None."""
    before = [r for r in self.rows if r["step"] <= self.run.steps]
    return before[-1] if before else None

  def wall_time(self) -> Optional[float]:
    """Seconds of all launches by the driver (else the binary's summary)."""
    total, known = 0.0, False
    for launch in self.launches:
      start, end = launch.get("start_time"), launch.get("end_time")
      if start is None:
        continue
      if end is None:  # Driver gone, or still running: the last row after it.
        later = [r["wall_time"] for r in self.rows
                 if r.get("wall_time", 0) >= start]
        end = max(later, default=None)
        if end is None and self.running:
          end = time.time()
      if end is not None:
        total += end - start
        known = True
    if known:
      return total
    if self.summary and self.summary.get("wall_time_sec") is not None:
      return float(self.summary["wall_time_sec"])
    return None

  def machine(self) -> Optional[Dict[str, Any]]:
    machines = [l["machine"] for l in self.launches if l.get("machine")]
    return machines[-1] if machines else None


def load_state(run: Run, reused_dir: Optional[str] = None) -> RunState:
  own_path = run.path
  source = reused_dir or own_path
  machine = read_json(os.path.join(own_path, MACHINE_FILE)) or {}
  return RunState(
      run=run, source=source, reused=reused_dir is not None,
      summary=read_json(os.path.join(source, SUMMARY_FILE)),
      rows=read_rows(source),
      launches=[] if reused_dir else list(machine.get("launches", [])),
      running=reused_dir is None and lock_holder(run) is not None)


# --------------------------------------------------------------------------
# Reuse of finished runs made outside the study.


def _same(a: Any, b: Any) -> bool:
  if isinstance(a, bool) or isinstance(b, bool):
    return a is b or (a == b and type(a) is type(b))
  if isinstance(a, (int, float)) and isinstance(b, (int, float)):
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=0.0)
  return a == b


def matches(run: Run, config: Mapping[str, Any],
            defaults: Mapping[str, Any]) -> bool:
  """Whether a run's config.json has exactly the settings of ``run``.

  Compared: every flag of the binary (its default unless the study sets it)
  except the cadences, the data paths, the placement, the step target and
  the logdir. A flag missing from an older config counts as its default.
  """
  expected = {**defaults, **run.flag_values()}
  for key, value in expected.items():
    if key in NOT_COMPARED:
      continue
    if key not in config:
      if key in defaults and _same(value, defaults[key]):
        continue
      return False
    if not _same(config[key], value):
      return False
  return True


def _candidate_dirs(options: Options) -> List[str]:
  root = os.path.abspath(options.root)
  found = []
  for base in options.reuse_from:
    base = os.path.abspath(base)
    if not os.path.isdir(base):
      continue
    level1 = [os.path.join(base, d) for d in sorted(os.listdir(base))]
    level2 = [os.path.join(d, e) for d in level1 if os.path.isdir(d)
              for e in sorted(os.listdir(d))]
    for path in [base] + level1 + level2:
      path = os.path.abspath(path)
      if (path == root or path.startswith(root + os.sep) or
          not os.path.isfile(os.path.join(path, CONFIG_FILE)) or
          not os.path.isfile(os.path.join(path, SUMMARY_FILE))):
        continue
      found.append(path)
  return found


def module_defaults(module: str, python: str = sys.executable
                   ) -> Optional[Dict[str, Any]]:
  """A binary's flag defaults, from a subprocess (keeps TF out of here)."""
  code = ("import json, sys; from %s import default_flag_values as d; "
          "json.dump(d(), sys.stdout)" % module)
  try:
    out = subprocess.run([python, "-c", code], cwd=REPO_ROOT, check=True,
                         capture_output=True, text=True, timeout=300)
    return json.loads(out.stdout)
  except (subprocess.SubprocessError, OSError, ValueError) as e:
    print(f"reproduce: cannot read the defaults of {module} ({e}); no runs "
          f"are reused.", file=sys.stderr)
    return None


def find_reusable(runs: Sequence[Run], options: Options) -> Dict[str, str]:
  """Run name -> finished outside directory with the same settings.

  Only runs whose own logdir holds no progress are considered.
  """
  candidates = []
  for path in _candidate_dirs(options):
    config = read_json(os.path.join(path, CONFIG_FILE))
    summary = read_json(os.path.join(path, SUMMARY_FILE))
    if isinstance(config, dict) and isinstance(summary, dict):
      candidates.append((path, config, summary))
  found, defaults = {}, {}
  for run in runs:
    if read_rows(run.path) or os.path.exists(
        os.path.join(run.path, SUMMARY_FILE)):
      continue
    for path, config, summary in candidates:
      flags_ = run.flag_values()
      if (config.get("dataset") != flags_["dataset"] or
          config.get("grad_type") != flags_["grad_type"] or
          summary.get("steps", 0) < run.steps):
        continue
      module = run.variant.module
      if module not in defaults:
        defaults[module] = module_defaults(module, options.python)
      if defaults[module] is None or not matches(run, config,
                                                 defaults[module]):
        continue
      if any(r["step"] <= run.steps for r in read_rows(path)):
        found[run.name] = path
        break
  return found


# --------------------------------------------------------------------------
# The machine.


def _machine_key(machine: Mapping[str, Any]) -> Tuple:
  return (machine.get("cpu_model"), machine.get("usable_cores"),
          tuple(machine.get("gpus") or ()), machine.get("tensorflow"))


def _git_commit() -> Optional[str]:
  try:
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT,
                          capture_output=True, text=True, check=True,
                          timeout=30).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=REPO_ROOT, capture_output=True, text=True, check=True,
        timeout=30).stdout.strip()
    return head + ("+local changes" if dirty else "")
  except (subprocess.SubprocessError, OSError):
    return None


# --------------------------------------------------------------------------
# Launching.


class _Launch:
  """A run being trained by a child process of this driver."""

  def __init__(self, run: Run, options: Options):
    self.run = run
    self.lock_path = os.path.join(run.path, LOCK_FILE)
    self.process = None
    self.log = None
    self.options = options

  def acquire(self) -> bool:
    os.makedirs(self.run.path, exist_ok=True)
    for _ in range(2):
      try:
        fd = os.open(self.lock_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
      except FileExistsError:
        if lock_holder(self.run) is not None:
          return False
        try:
          os.remove(self.lock_path)  # Stale: its process is gone.
        except FileNotFoundError:
          pass
        continue
      with os.fdopen(fd, "w") as f:
        json.dump({"pid": os.getpid(), "host": socket.gethostname(),
                   "since": time.time()}, f)
      return True
    return False

  def start(self):
    run = self.run
    command = run.command(self.options.python)
    start_step = load_state(run).steps_done
    entry = {"start_time": time.time(),
             "start": datetime.datetime.now().isoformat(timespec="seconds"),
             "target_steps": run.steps, "start_step": start_step,
             "command": command, "git_commit": _git_commit(),
             "load_average": list(os.getloadavg()),
             "machine": hardware.machine_info()}
    self._update_machine_file(append=entry)
    self.log = open(os.path.join(run.path, RUN_LOG), "a")
    self.log.write(f"{LAUNCH_HEADER} {entry['start']} target {run.steps} "
                   f"steps from step {start_step}\n$ "
                   f"{' '.join(command)}\n")
    self.log.flush()
    env = dict(os.environ)
    shared = os.path.join(os.path.dirname(REPO_ROOT), "shared", "data")
    if not env.get("TF_DISCRETE_MANUAL_DIR") and os.path.isdir(shared):
      env["TF_DISCRETE_MANUAL_DIR"] = shared
    self.process = subprocess.Popen(command, cwd=REPO_ROOT, env=env,
                                    stdout=self.log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL)
    with open(self.lock_path, "w") as f:
      json.dump({"pid": os.getpid(), "child_pid": self.process.pid,
                 "host": socket.gethostname(), "since": time.time()}, f)

  def finish(self) -> int:
    code = self.process.returncode
    self.log.write(f"=== reproduce: exit code {code}\n")
    self.log.close()
    state = load_state(self.run)
    self._update_machine_file(finish={
        "end_time": time.time(),
        "end": datetime.datetime.now().isoformat(timespec="seconds"),
        "returncode": code, "end_step": state.steps_done})
    try:
      os.remove(self.lock_path)
    except FileNotFoundError:
      pass
    return code

  def _update_machine_file(self, append=None, finish=None):
    path = os.path.join(self.run.path, MACHINE_FILE)
    data = read_json(path) or {"launches": []}
    if append is not None:
      data["launches"].append(append)
    if finish is not None and data["launches"]:
      data["launches"][-1].update(finish)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
      json.dump(data, f, indent=1)
    os.replace(tmp, path)


def run_study(options: Options) -> int:
  """Trains the unfinished selected runs, writes the report; exit status."""
  runs = study_runs(options)
  selected = select(runs, options.only)
  if options.only and not selected:
    print(f"reproduce: --only {','.join(options.only)} selects no run; "
          f"runs are named like {runs[0].name}", file=sys.stderr)
    return 2
  reused = find_reusable(runs, options) if options.reuse_from else {}
  if options.report_only:
    write_report(options, runs, reused)
    return 0
  todo = []
  for run in selected:
    state = load_state(run, reused.get(run.name))
    if state.complete:
      where = f" (reused {state.source})" if state.reused else ""
      print(f"skip (done, {state.steps_done} steps){where}: {run.name}")
    elif state.running:
      print(f"skip (running in another process): {run.name}")
    elif options.dry_run:
      print(f"# {run.name}: {state.status}, step {state.steps_done} of "
            f"{run.steps}\n{' '.join(run.command(options.python))}")
    else:
      todo.append(run)
  if options.dry_run:
    return 0
  failures, active = 0, []
  while todo or active:
    while todo and len(active) < options.jobs:
      launch = _Launch(todo.pop(0), options)
      if not launch.acquire():
        print(f"skip (taken by another process): {launch.run.name}")
        continue
      print(f"launch: {launch.run.name} (target {launch.run.steps} steps; "
            f"log {os.path.join(launch.run.logdir, RUN_LOG)})", flush=True)
      launch.start()
      active.append(launch)
    if not active:
      continue
    if len(active) == 1:
      active[0].process.wait()
    while all(launch.process.poll() is None for launch in active):
      time.sleep(1.0)
    for launch in [a for a in active if a.process.poll() is not None]:
      code = launch.finish()
      active.remove(launch)
      failures += code != 0
      print(f"{'done' if code == 0 else f'FAILED (exit code {code})'}: "
            f"{launch.run.name}", flush=True)
      write_report(options, runs, reused)
  write_report(options, runs, reused)
  return 1 if failures else 0


# --------------------------------------------------------------------------
# Claims.


@dataclasses.dataclass
class Comparison:
  dataset: str
  setting: str
  arm_values: List[float]
  other_values: List[float]
  outcome: str  # "confirms", "contradicts" or "not available"


@dataclasses.dataclass
class ClaimResult:
  claim: Claim
  verdict: str  # "confirmed", "contradicted", "mixed", "not yet available"
  comparisons: List[Comparison]

  def summary(self) -> str:
    available = [c for c in self.comparisons if c.outcome != "not available"]
    confirmed = sum(c.outcome == "confirms" for c in available)
    missing = len(self.comparisons) - len(available)
    if not available:
      text = "no finished pair of runs yet"
    else:
      text = (f"holds in {confirmed} of {len(available)} finished "
              f"setting{'s' if len(available) > 1 else ''}")
    if available and missing:
      text += f"; {missing} setting{'s' if missing > 1 else ''} not finished"
    return text


def _mean(values: Sequence[float]) -> float:
  return sum(values) / len(values)


def evaluate_claims(finals: Mapping[Tuple[str, str, str, str],
                                    Sequence[Mapping[str, Any]]],
                    settings: Sequence[Tuple[str, str, str]],
                    claims: Sequence[Claim] = CLAIMS) -> List[ClaimResult]:
  """Checks every claim on the final metrics of finished runs.

  Args:
    finals: (group, dataset, setting, arm) -> final metrics rows of the
      finished runs of that configuration (one per seed).
    settings: every (group, dataset, setting) of the study, finished or not.
    claims: the claims.

  Returns:
    One result per claim: per setting, the mean over seeds of each arm's
    metric and whether the claim holds there; the verdict is "confirmed"
    when it holds in every finished setting, "contradicted" when it holds in
    none, "mixed" otherwise, "not yet available" without a finished pair.
  """
  results = []
  for claim in claims:
    comparisons = []
    for group, dataset, setting in settings:
      if group != claim.group:
        continue
      values = []
      for arm in (claim.arm, claim.other):
        rows = finals.get((group, dataset, setting, arm), ())
        values.append([float(r[claim.metric]) for r in rows
                       if r.get(claim.metric) is not None and
                       math.isfinite(float(r[claim.metric]))])
      if not values[0] or not values[1]:
        outcome = "not available"
      else:
        sign = 1.0 if claim.higher_is_better else -1.0
        margin = sign * (_mean(values[0]) - _mean(values[1]))
        holds = margin >= -claim.tolerance if claim.tolerance else margin > 0
        outcome = "confirms" if holds else "contradicts"
      comparisons.append(Comparison(dataset, setting, values[0], values[1],
                                    outcome))
    outcomes = {c.outcome for c in comparisons} - {"not available"}
    verdict = ("not yet available" if not outcomes else
               "confirmed" if outcomes == {"confirms"} else
               "contradicted" if outcomes == {"contradicts"} else "mixed")
    results.append(ClaimResult(claim, verdict, comparisons))
  return results


# --------------------------------------------------------------------------
# Report.


def _num(x: Optional[float], digits: int = 2) -> str:
  if x is None or not math.isfinite(x):
    return "—"
  return f"{x:,.{digits}f}".replace("-", "−")


def _sci(x: Optional[float]) -> str:
  if x is None or not math.isfinite(x):
    return "—"
  return f"{x:.3g}".replace("-", "−")


def _duration(seconds: Optional[float]) -> str:
  if seconds is None:
    return "—"
  if seconds < 120:
    return f"{seconds:.0f} s"
  if seconds < 7200:
    return f"{seconds / 60:.0f} min"
  return f"{seconds / 3600:.1f} h"


def _rel(path: str, start: str) -> str:
  return os.path.relpath(os.path.abspath(path), os.path.abspath(start))


def _status_cell(state: RunState) -> str:
  done, target = state.steps_done, state.run.steps
  if state.status == "done":
    row = state.final_row()
    extra = f" (row at {row['step']:,})" if row["step"] != target else ""
    return f"done, {target:,}{extra}"
  if state.status == "pending":
    return "**pending** (not started)"
  return f"**{state.status}** at {done:,} / {target:,}"


def _metric_cell(state: RunState, key: str, fmt) -> str:
  row = state.final_row() if state.complete else (
      state.rows[-1] if state.rows else None)
  if row is None or row.get(key) is None:
    return "—"
  text = fmt(row[key])
  return text if state.complete else f"*{text}*†"


def _ms_per_step(state: RunState) -> Optional[float]:
  if state.summary and state.summary.get("ms_per_step"):
    return state.summary["ms_per_step"]
  last = state.rows[-1] if state.rows else None
  if last and last.get("train_time_sec") and last["step"]:
    return 1e3 * last["train_time_sec"] / last["step"]
  return None


def _figure(group: Group, states: Sequence[RunState], key: str, label: str,
            log: bool, path: str) -> bool:
  """Curves of ``key`` per setting (panels) and arm (lines); False if none."""
  panels = []
  for s in states:
    panel = (s.run.dataset, s.run.variant.setting)
    if panel not in panels:
      panels.append(panel)
  if not any(r.get(key) is not None and r["step"] > 0
             for s in states for r in s.rows):
    return False
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  cols = min(3, len(panels))
  rows = math.ceil(len(panels) / cols)
  fig, axes = plt.subplots(rows, cols, figsize=(max(4.6 * cols, 6.0),
                                                3.4 * rows + 0.3),
                           squeeze=False)
  arms = [v.arm for v in STUDY if v.group == group.name]
  arms = list(dict.fromkeys(arms))
  colors = {arm: f"C{i}" for i, arm in enumerate(arms)}
  for ax, panel in zip(axes.flat, panels):
    for s in states:
      if (s.run.dataset, s.run.variant.setting) != panel:
        continue
      # From the first evaluation after step 0 (the initial bounds would
      # squeeze the curves).
      points = [(r["step"], r[key]) for r in s.rows
                if r.get(key) is not None and 0 < r["step"] <= s.run.steps
                and (not log or r[key] > 0)]
      if not points:
        continue
      x, y = zip(*points)
      ax.plot(x, y, color=colors[s.run.variant.arm],
              linestyle="-" if s.complete else "--", marker=".",
              label=f"{s.run.variant.label} (seed {s.run.seed})"
              + ("" if s.complete else " [incomplete]"))
    ax.set_title(f"{panel[0]}, {SETTING_LABELS.get(panel[1], panel[1])}")
    ax.set_xlabel("step")
    ax.set_ylabel(label)
    if log:
      ax.set_yscale("log")
    ax.grid(alpha=0.3)
    if ax.lines:
      ax.legend(fontsize=7)
    else:
      ax.set_yscale("linear")
      ax.set_xticks([])
      ax.set_yticks([])
      ax.text(0.5, 0.5, "no data yet", ha="center", va="center",
              transform=ax.transAxes, color="grey")
  for ax in list(axes.flat)[len(panels):]:
    ax.axis("off")
  # Two lines: a one-panel figure is too narrow for title and metric.
  fig.suptitle(f"{group.title}\n{label}", fontsize=10)
  fig.tight_layout()
  os.makedirs(os.path.dirname(path), exist_ok=True)
  fig.savefig(path, dpi=90)
  plt.close(fig)
  return True


def collect(runs: Sequence[Run], reused: Mapping[str, str]
           ) -> List[RunState]:
  return [load_state(r, reused.get(r.name)) for r in runs]


def finals_of(states: Sequence[RunState]):
  finals = {}
  for s in states:
    if s.complete:
      v = s.run.variant
      finals.setdefault((v.group, s.run.dataset, v.setting, v.arm),
                        []).append(s.final_row())
  settings = list(dict.fromkeys(
      (s.run.group, s.run.dataset, s.run.variant.setting) for s in states))
  return finals, settings


def write_report(options: Options, runs: Sequence[Run],
                 reused: Optional[Mapping[str, str]] = None) -> str:
  """Writes the report and its figures; returns the report's text.

  Args:
    options: the driver's options (report and figure paths, root).
    runs: the study's runs.
    reused: run name -> outside directory read instead (see
      :func:`find_reusable`); computed when None.
  """
  if reused is None:
    reused = find_reusable(runs, options) if options.reuse_from else {}
  states = collect(runs, reused)
  report_dir = os.path.dirname(os.path.abspath(options.report))
  figures_dir = options.figures_dir or os.path.join(report_dir, "figures")
  machines = {}
  for s in states:
    for launch in s.launches:
      if launch.get("machine"):
        machines.setdefault(_machine_key(launch["machine"]),
                            launch["machine"])
  machine_ids = {k: f"M{i + 1}" for i, k in enumerate(machines)}
  finals, settings = finals_of(states)
  claims = evaluate_claims(finals, settings)
  lines = [
      "# Results: estimator comparisons (issue 8)",
      "",
      f"Generated by `{options.invocation}` on "
      f"{datetime.datetime.now().isoformat(timespec='minutes')} from the "
      f"runs under `{_logdir_arg(options.root)}`; do not edit by hand. "
      "Every number of our runs is the row at the run's target step of "
      "that run directory's `metrics.jsonl` (timings: `summary.json`, and "
      "`machine.json` for the wall time and the machine). Bounds are in "
      "nats, higher is better; gradient variance is the encoder gradient "
      "variance of the binaries (EMA 0.999 of g and g², mean over encoder "
      "parameters) at the end, each run on its own trajectory.",
      "",
      "The study: `python -m experiments.reproduce` (see the README section "
      "*Results*); `--report_only` rewrites this page from whatever runs "
      "exist. A value in *italics*† comes from an unfinished run, at the "
      "step shown in its status column, and is not used for the claims.",
      "",
      "## Claims",
      "",
      "Computed from the finished runs' numbers on every regeneration "
      "(mean over seeds where there are several; the direction of the "
      "difference only, no significance test with a single seed).",
      "",
  ]
  for result in claims:
    c = result.claim
    detail = "; ".join(
        f"{cmp.dataset} {SETTING_LABELS.get(cmp.setting, cmp.setting)}: "
        f"{_fmt_metric(c.metric, _mean(cmp.arm_values))} vs "
        f"{_fmt_metric(c.metric, _mean(cmp.other_values))}"
        for cmp in result.comparisons if cmp.outcome != "not available")
    partial = result.verdict != "not yet available" and any(
        cmp.outcome == "not available" for cmp in result.comparisons)
    verdict = result.verdict + (" so far" if partial else "")
    lines.append(f"- **{verdict}** — {c.text} ({c.source}): "
                 f"{result.summary()}" + (f" ({detail})" if detail else "")
                 + ".")
  lines += ["", "## Machines", ""]
  if machines:
    for key, machine in machines.items():
      lines.append(f"- {machine_ids[key]}: {hardware.machine_label(machine)} "
                   f"(host {machine.get('host')}).")
  else:
    lines.append("- No run has been launched by the driver yet.")
  lines.append("- n/r: not recorded (a reused run made outside the driver; "
               "see its directory).")
  lines.append("")
  for number, group in enumerate(GROUPS, 1):
    lines += _group_section(number, group, [s for s in states
                                            if s.run.group == group.name],
                            machine_ids, options, report_dir, figures_dir)
  lines += ["## Run directories and commands", "",
            "Each run's exact command line is in its `machine.json` (one "
            "entry per launch) and at the head of each launch in its "
            "`run.log`.", "", "| run | status | directory read |",
            "|---|---|---|"]
  for s in states:
    lines.append(f"| {s.run.name} | {_status_cell(s)} | "
                 f"`{_display_dir(s)}`{' (reused)' if s.reused else ''} |")
  text = "\n".join(lines) + "\n"
  os.makedirs(report_dir, exist_ok=True)
  tmp = options.report + ".tmp"
  with open(tmp, "w") as f:
    f.write(text)
  os.replace(tmp, options.report)
  return text


def _fmt_metric(metric: str, value: float) -> str:
  return _sci(value) if metric == "grad_variance" else _num(value)


def _display_dir(state: RunState) -> str:
  return _logdir_arg(state.source)


def _group_section(number, group, states, machine_ids, options, report_dir,
                   figures_dir) -> List[str]:
  steps = sorted({s.run.steps for s in states})
  seeds = sorted({s.run.seed for s in states})
  done = sum(s.complete for s in states)
  walls = [s.wall_time() for s in states]
  known = [w for w in walls if w is not None]
  total_wall = _duration(sum(known)) if known else "none yet"
  used = sorted({machine_ids[_machine_key(s.machine())] for s in states
                 if s.machine()} | ({"n/r"} if any(s.reused for s in states)
                                    else set()))
  lines = [
      f"## {number}. {group.title}", "", group.description, "",
      f"- Steps: {', '.join(f'{n:,}' for n in steps)} per run (the papers: "
      f"{PAPER_STEPS:,}).",
      f"- Seeds: {', '.join(map(str, seeds))}.",
      f"- Runs finished: {done} of {len(states)}.",
      f"- Wall time: {total_wall} in all (sum over runs, "
      f"training and evaluation; per run in the table). A run's wall time "
      f"counts each launch from start to end, including time it shared the "
      f"CPU with other runs or was paused for benchmarks (a pause inside a "
      f"training call also lengthens `train ms/step`); the Speed section of "
      f"the README has the uncontended step times.",
      f"- Machine: {', '.join(used) if used else 'none yet'} (see Machines).",
      "",
  ]
  paper = group.name == "binary"
  multisample = group.name == "multisample"
  header = ["data set", "setting", "estimator", "evaluations", "seed",
            "status (steps)", "train ELBO", "test 100-sample bound",
            "grad variance"]
  if multisample:
    header.insert(7, "training bound (own K)")
  header += ["train ms/step", "wall time", "machine"]
  if paper:
    header.append(f"theirs: train ELBO at {PAPER_STEPS:,} steps")
  header.append("run directory")
  lines += ["| " + " | ".join(header) + " |",
            "|" + "---|" * len(header)]
  for s, wall in zip(states, walls):
    v = s.run.variant
    machine = ("n/r" if s.reused else
               machine_ids[_machine_key(s.machine())] if s.machine() else "—")
    cells = [s.run.dataset, SETTING_LABELS.get(v.setting, v.setting), v.label,
             v.evaluations, str(s.run.seed), _status_cell(s),
             _metric_cell(s, "train_elbo", _num),
             _metric_cell(s, "test_iwae", _num),
             _metric_cell(s, "grad_variance", _sci)]
    if multisample:
      cells.insert(7, _metric_cell(s, "train_objective", _num))
    cells += [_num(_ms_per_step(s), 1), _duration(wall), machine]
    if paper:
      theirs = PAPER_TRAIN_ELBO.get((group.name, s.run.dataset, v.setting,
                                     v.arm))
      cells.append(f"≈ {_num(theirs, 0)} (theirs)" if theirs is not None
                   else "—")
    cells.append(f"`{_display_dir(s)}`" + (" (reused)" if s.reused else ""))
    lines.append("| " + " | ".join(cells) + " |")
  lines.append("")
  if paper:
    lines += [PAPER_NOTE + " Our step count differs: "
              + ", ".join(f"{n:,}" for n in steps) + " steps.", ""]
  else:
    lines += ["No headline number of the seed papers is recorded for this "
              "table (DESIGN §4), so none is shown.", ""]
  figures = []
  for key, label, log in group.curves:
    path = os.path.join(figures_dir, f"{group.name}_{key}.png")
    if _figure(group, states, key, label, log, path):
      figures.append((label, path))
  if figures:
    lines += [f"![{group.name}: {label}]({_rel(path, report_dir)})"
              for label, path in figures]
  else:
    lines.append("Figures appear here once runs have written metrics.")
  lines.append("")
  return lines


# --------------------------------------------------------------------------
# Program.


def define_flags(fv: flags.FlagValues = flags.FLAGS):
  flags.DEFINE_string("root", Options.root, "Folder of the study's runs.",
                      flag_values=fv)
  flags.DEFINE_string("report", Options.report, "Report to write.",
                      flag_values=fv)
  flags.DEFINE_string("figures_dir", None, "PNG figures (default: "
                      "figures/ beside the report).", flag_values=fv)
  for group in GROUPS:
    flags.DEFINE_integer(f"steps_{group.name}", group.default_steps,
                         f"Training steps of each run of the {group.name} "
                         f"table.", lower_bound=1, flag_values=fv)
  flags.DEFINE_integer("eval_every", None, "Evaluation (and checkpoint) "
                       "cadence of every run; default per table: " + ", ".join(
                           f"{g.name} {g.eval_every}" for g in GROUPS) + ".",
                       lower_bound=1, flag_values=fv)
  flags.DEFINE_list("only", [], "Launch only the runs whose name "
                    "(<group>/<dataset>-<setting>-<arm>-seed<seed>) or group "
                    "matches one of these globs; the report covers all.",
                    flag_values=fv)
  flags.DEFINE_list("datasets", None, "Data sets of every table instead of "
                    "the study's (e.g. synthetic, for tests).", flag_values=fv)
  flags.DEFINE_list("seeds", None, "Seeds of every run instead of each "
                    "table's own (" + ", ".join(
                        f"{g.name} {','.join(map(str, g.seeds))}"
                        for g in GROUPS) + ").", flag_values=fv)
  flags.DEFINE_bool("dry_run", False, "Print the commands of the runs that "
                    "would be launched; launch nothing, write nothing.",
                    flag_values=fv)
  flags.DEFINE_bool("report_only", False, "No training: write the report "
                    "from whatever runs exist.", flag_values=fv)
  flags.DEFINE_integer("jobs", 1, "Runs trained at the same time.",
                       lower_bound=1, flag_values=fv)
  flags.DEFINE_list("reuse_from", list(Options.reuse_from),
                    "Folders searched (two levels deep) for finished runs "
                    "made outside the study with exactly a study run's "
                    "settings; those are reported instead of being trained "
                    "again. Empty: none.", flag_values=fv)


def options_from_flags(fv: flags.FlagValues = flags.FLAGS,
                       argv: Sequence[str] = ()) -> Options:
  try:
    seeds = (None if fv.seeds is None else
             tuple(int(s) for s in fv.seeds))
  except ValueError as e:
    raise app.UsageError(f"--seeds takes integers: {fv.seeds}") from e
  return Options(
      root=fv.root, report=fv.report, figures_dir=fv.figures_dir,
      steps={g.name: fv[f"steps_{g.name}"].value for g in GROUPS},
      eval_every=fv.eval_every, only=tuple(fv.only),
      datasets=tuple(fv.datasets) if fv.datasets else None, seeds=seeds,
      dry_run=fv.dry_run, report_only=fv.report_only, jobs=fv.jobs,
      reuse_from=tuple(p for p in fv.reuse_from if p),
      invocation=" ".join(["python -m experiments.reproduce"] +
                          list(argv[1:] if argv else sys.argv[1:])))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if flags.FLAGS.dry_run and flags.FLAGS.report_only:
    raise app.UsageError("--dry_run and --report_only do not go together.")
  sys.exit(run_study(options_from_flags(flags.FLAGS, sys.argv)))


if __name__ == "__main__":
  define_flags()
  app.run(main)
