"""Tests of experiments/study/settings.py: the study's tables, runs, claims
and reference numbers, and of the command's flags."""

import os
import subprocess
import sys

from absl import flags

from experiments.study import report
from experiments.study import settings

REPO = settings.REPO_ROOT


def _study():
  return settings.study_runs(settings.Options(reuse_from=()))


def test_study_has_the_eight_tables_with_unique_runs():
  runs = _study()
  names = [r.name for r in runs]
  assert len(names) == len(set(names))
  by_group = {g.name: [r for r in runs if r.group == g.name]
              for g in settings.GROUPS}
  # 3 estimators x 3 data sets x 2 networks x 3 seeds; 2 x 2 x 3; 2 x 2 x 3;
  # 5 x 1; DisARM on 3 data sets + RLOO and ARM on dynamic MNIST, 1 seed;
  # relaxation 7 Bernoulli + 5 categorical, coupling 6 + 4, control
  # variates 4 + 4, 1 seed.
  assert {k: len(v) for k, v in by_group.items()} == {
      "binary": 54, "multilayer": 12, "multisample": 12, "categorical": 5,
      "paper": 6, "relaxation": 12, "coupling": 10, "control_variates": 8}
  assert {r.dataset for r in by_group["binary"]} == {
      "dynamic_mnist", "fashion_mnist", "omniglot"}
  for group in ("multilayer", "multisample", "categorical"):
    assert {r.dataset for r in by_group[group]} == {"dynamic_mnist"}
  assert {r.seed for r in by_group["binary"]} == {0, 1, 2}
  assert {r.seed for r in by_group["categorical"] + by_group["paper"]} == {0}
  for run in runs:
    command = run.command("python")
    # The RODEO paper's protocol has neither; every other table has both.
    official = run.group != "control_variates"
    assert ("--demean_input" in command) == official
    assert ("--initialize_with_bias" in command) == official
    assert f"--num_steps={run.steps}" in command
    assert command[2] == run.variant.module
    assert run.variant.module == ("experiments.categorical_vae"
                                  if run.group == "categorical"
                                  or run.variant.setting == "20x10"
                                  else "experiments.bernoulli_vae")
  assert {r.steps for r in by_group["binary"]} == {100_000}
  assert {r.steps for r in by_group["categorical"]} == {50_000}
  assert {r.steps for r in by_group["paper"]} == {1_000_000}
  assert {(r.dataset, r.variant.arm) for r in by_group["paper"]} == {
      ("dynamic_mnist", "disarm"), ("fashion_mnist", "disarm"),
      ("omniglot", "disarm"), ("dynamic_mnist", "rloo"),
      ("dynamic_mnist", "arm"), ("dynamic_mnist", "disarm_separate")}


def test_run_layout_and_flags_are_those_of_the_runs_in_progress():
  # The runs under /work/runs/study were launched with exactly these flags
  # and logdir; the driver must resume them unchanged.
  options = settings.Options(root="/work/runs/study", reuse_from=())
  run = next(r for r in settings.study_runs(options)
             if r.name == "paper/dynamic_mnist-nonlinear-disarm-seed0")
  assert run.logdir == ("/work/runs/study/paper/"
                        "dynamic_mnist-nonlinear-disarm-seed0")
  assert run.short_name == "dynamic_mnist-nonlinear-disarm-seed0"
  assert run.command("python") == [
      "python", "-m", "experiments.bernoulli_vae", "--dataset=dynamic_mnist",
      "--grad_type=disarm", "--encoder_type=nonlinear", "--demean_input",
      "--initialize_with_bias", "--seed=0", "--num_steps=1000000",
      "--eval_every=25000", "--checkpoint_every=25000", "--log_every=1000",
      "--logdir=/work/runs/study/paper/dynamic_mnist-nonlinear-disarm-seed0"]
  inside = settings.Options(root=os.path.join(REPO, "runs", "study"))
  run = settings.study_runs(inside)[0]
  assert run.logdir == os.path.join("runs", "study", "binary",
                                    "dynamic_mnist-linear-disarm-seed0")
  assert run.path == os.path.join(REPO, run.logdir)


def test_every_study_command_passes_the_binaries_flag_checks():
  # Imported here: the binaries bring TensorFlow; the driver does not.
  from experiments import bernoulli_vae  # pylint: disable=g-import-not-at-top
  from experiments import categorical_vae  # pylint: disable=g-import-not-at-top
  binaries = {settings.BERNOULLI: bernoulli_vae,
              settings.CATEGORICAL: categorical_vae}
  for run in _study():
    binary = binaries[run.variant.module]
    values = binary.default_flag_values()
    unknown = set(run.flag_values()) - set(values)
    assert not unknown, (run.name, unknown)
    values.update(run.flag_values())
    binary.check_flags(values)  # Raises ValueError for a misfit.


def test_multisample_arms_have_equal_evaluations():
  variants = [v for v in settings.STUDY if v.group == "multisample"]
  for setting in {v.setting for v in variants}:
    pair = {v.arm: v for v in variants if v.setting == setting}
    assert set(pair) == {"local_disarm", "vimco"}
    assert (pair["local_disarm"].flags["num_pairs"] ==
            pair["vimco"].flags["num_pairs"])
    from tf_discrete import bernoulli  # pylint: disable=g-import-not-at-top
    count = 2 * pair["vimco"].flags["num_pairs"]
    assert (bernoulli.get("local_disarm").evaluations(count, [200]) ==
            bernoulli.get("vimco").evaluations(count, [200]) == count)


def test_every_claim_compares_arms_of_its_group():
  for claim in settings.CLAIMS:
    arms = {v.arm for v in settings.STUDY if v.group == claim.group}
    assert claim.arm in arms and claim.other in arms, claim


def test_paper_reference_numbers_belong_to_paper_runs():
  assert settings.PAPER_REFERENCE == {
      ("dynamic_mnist", "nonlinear", "disarm", "train_elbo"): -97.95,
      ("fashion_mnist", "nonlinear", "disarm", "train_elbo"): -234.4,
      ("omniglot", "nonlinear", "disarm", "train_elbo"): -108.6,
      ("fashion_mnist", "nonlinear", "disarm", "test_iwae"): -234.5,
      ("omniglot", "nonlinear", "disarm", "test_iwae"): -107.3,
  }
  paper = {(r.dataset, r.variant.setting, r.variant.arm)
           for r in _study() if r.group == "paper"}
  for key in settings.PAPER_REFERENCE:
    assert key[:3] in paper
  names = {r.name for r in _study()}
  assert set(settings.NOTES) <= names


def test_every_reference_number_belongs_to_a_run_and_metric_of_its_group():
  metrics = dict(report.TABLE_METRICS)
  for reference in settings.REFERENCES:
    configs = {(r.dataset, r.variant.setting, r.variant.arm)
               for r in _study() if r.group == reference.group}
    for key in reference.values:
      assert key[:3] in configs, (reference.paper, key)
      assert key[3] in metrics, (reference.paper, key)


def test_rodeo_figure_is_compared_at_our_length_and_at_theirs():
  rodeo = [r for r in settings.REFERENCES if r.group == "control_variates"]
  assert sorted(r.steps for r in rodeo) == [
      settings.GROUP_BY_NAME["control_variates"].default_steps,
      settings.PAPER_STEPS]
  for reference in rodeo:
    values = {k[1:3]: v for k, v in reference.values.items()}
    # The orderings the figure shows at both lengths.
    assert values[("K2", "rodeo")] < values[("K2", "double_cv")] < values[
        ("K2", "disarm")]
    assert values[("K3", "rodeo")] < values[("K3", "double_cv")] < values[
        ("K3", "relax")]


def test_select_by_glob_and_group():
  runs = _study()
  assert {r.group for r in settings.select(runs, ["multilayer"])} == {
      "multilayer"}
  picked = settings.select(runs, ["binary/omniglot-*-disarm-seed0",
                                  "categorical/*arsm_plus*"])
  assert sorted(r.name for r in picked) == [
      "binary/omniglot-linear-disarm-seed0",
      "binary/omniglot-nonlinear-disarm-seed0",
      "categorical/dynamic_mnist-20x10-arsm_plus-seed0"]
  assert len(settings.select(runs, ["binary/omniglot-*-disarm-*"])) == 6
  assert settings.select(runs, []) == runs
  assert not settings.select(runs, ["nothing*"])


def test_seeds_and_datasets_override(make_options):
  runs = settings.study_runs(make_options(seeds=(0, 3)))
  assert {r.dataset for r in runs} == {"synthetic"}
  # Per seed: 6 + 4 + 4 + 5 + 1 (the paper table's RLOO, ARM and DisARM
  # with a separate decoder sample run on dynamic MNIST only) + 12
  # relaxation + 10 coupling + 8 control variates.
  assert len(runs) == 2 * (6 + 4 + 4 + 5 + 1 + 12 + 10 + 8)
  # Categorical arms of the mixed tables run half the steps.
  assert all((r.eval_every, r.steps) == ((5, 10) if r.variant.steps_divisor
                                         == 2 else (10, 20)) for r in runs)
  assert any(r.name.endswith("-seed3") for r in runs)


def test_records_and_figures_default_beside_the_report(tmp_path):
  options = settings.Options(report=str(tmp_path / "d" / "results.md"))
  assert options.records_dir == str(tmp_path / "d" / "records")
  assert options.figures_path == str(tmp_path / "d" / "figures")
  options = settings.Options(report="r.md", records=str(tmp_path / "x"),
                             figures_dir=str(tmp_path / "f"))
  assert options.records_dir == str(tmp_path / "x")
  assert options.figures_path == str(tmp_path / "f")


def test_the_driver_imports_no_tensorflow():
  code = ("import sys; import experiments.study.__main__; "
          "assert 'tensorflow' not in sys.modules, 'tensorflow imported'")
  subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True,
                 timeout=120)


def test_the_command_keeps_its_flags():
  from experiments.study import __main__ as command  # pylint: disable=g-import-not-at-top
  fv = flags.FlagValues()
  command.define_flags(fv)
  expected = {"root", "report", "figures_dir", "records", "eval_every",
              "only", "datasets", "seeds", "dry_run", "report_only", "jobs",
              "reuse_from"} | {f"steps_{g.name}" for g in settings.GROUPS}
  assert expected <= set(fv)
  fv(["study", "--root=r", "--report=d/x.md", "--records=d/rec",
      "--steps_paper=5", "--seeds=0,4", "--only=paper", "--reuse_from=",
      "--datasets=synthetic", "--jobs=2", "--eval_every=7"])
  options = command.options_from_flags(fv)
  assert options.root == "r" and options.report == "d/x.md"
  assert options.records == "d/rec" and options.steps["paper"] == 5
  assert options.steps["binary"] == 100_000
  assert options.seeds == (0, 4) and options.only == ("paper",)
  assert options.reuse_from == () and options.datasets == ("synthetic",)
  assert options.jobs == 2 and options.eval_every == 7


def test_no_issue_or_design_references_in_the_code():
  folder = os.path.join(REPO, "experiments", "study")
  for name in sorted(os.listdir(folder)):
    if name.endswith(".py"):
      with open(os.path.join(folder, name)) as f:
        text = f.read()
      assert "issue " not in text.lower(), name
      assert "DESIGN" not in text, name


def test_control_variate_table_follows_the_rodeo_protocol():
  runs = [r for r in _study() if r.group == "control_variates"]
  for run in runs:
    flags = run.flag_values()
    assert (flags["batch_size"], flags["infnet_lr"], flags["genmo_lr"],
            flags["prior_lr"]) == (100, 1e-3, 1e-3, 0.0)
    assert flags["num_samples"] == int(run.variant.setting[1:])
    learned = flags["grad_type"] in ("double_cv", "rodeo", "relax")
    assert (flags.get("control_variate_lr") == 1e-3) == learned
  assert sorted((r.variant.setting, r.variant.arm) for r in runs) == sorted(
      [("K2", a) for a in ("rloo", "disarm", "double_cv", "rodeo")]
      + [("K3", a) for a in ("rloo", "double_cv", "rodeo", "relax")])


def test_relaxation_temperatures_stated_are_the_registrys_defaults():
  import tf_discrete  # pylint: disable=g-import-not-at-top
  families = {"experiments.bernoulli_vae": tf_discrete.bernoulli,
              "experiments.categorical_vae": tf_discrete.categorical}
  checked = set()
  for variant in settings.STUDY:
    name = variant.flags["grad_type"]
    if variant.group != "relaxation" or name not in (
        settings.DEFAULT_TEMPERATURES):
      continue
    assert "temperature" not in variant.flags  # The runs use the default.
    facts = families[variant.module].get(name).facts
    assert facts.option("temperature").default == (
        settings.DEFAULT_TEMPERATURES[name]), (variant.module, name)
    if name == "gumbel_rao":
      assert facts.option("num_rao_samples").default == 10
      assert "10 conditional draws" in settings.RELAXATION_TEMPERATURES
    checked.add(name)
  assert checked == set(settings.DEFAULT_TEMPERATURES)
  for tau in settings.DEFAULT_TEMPERATURES.values():
    assert f"τ = {tau:g}" in settings.RELAXATION_TEMPERATURES
