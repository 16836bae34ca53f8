r"""Trains the study's runs and writes docs/results.md from their records.

Usage::

    export TF_DISCRETE_MANUAL_DIR=../shared/data
    nohup python -m experiments.study > runs/study.log 2>&1 &
    python -m experiments.study --dry_run       # the commands, no run
    python -m experiments.study --report_only   # records, then the report

See docs/study.md: the study (experiments/study/settings.py), the run
directories and locks (launch.py), the records (records.py) and the report
(report.py).
"""

import sys
from typing import Sequence

from absl import app
from absl import flags

from experiments.study import launch
from experiments.study import settings
from experiments.study.settings import Options


def define_flags(fv: flags.FlagValues = flags.FLAGS):
  flags.DEFINE_string("root", Options.root, "Folder of the study's runs.",
                      flag_values=fv)
  flags.DEFINE_string("report", Options.report, "Report to write.",
                      flag_values=fv)
  flags.DEFINE_string("figures_dir", None, "PNG figures (default: "
                      "figures/ beside the report).", flag_values=fv)
  flags.DEFINE_string("records", None, "Folder of the runs' records, the "
                      "report's only input (default: records/ beside the "
                      "report).", flag_values=fv)
  for group in settings.GROUPS:
    flags.DEFINE_integer(f"steps_{group.name}", group.default_steps,
                         f"Training steps of each run of the {group.name} "
                         f"table.", lower_bound=1, flag_values=fv)
  flags.DEFINE_integer("eval_every", None, "Evaluation (and checkpoint) "
                       "cadence of every run; default per table: " + ", ".join(
                           f"{g.name} {g.eval_every}" for g in settings.GROUPS)
                       + ".", lower_bound=1, flag_values=fv)
  flags.DEFINE_list("only", [], "Launch only the runs whose name "
                    "(<group>/<dataset>-<setting>-<arm>-seed<seed>) or group "
                    "matches one of these globs; the report covers all.",
                    flag_values=fv)
  flags.DEFINE_list("datasets", None, "Data sets of every table instead of "
                    "the study's (e.g. synthetic, for tests).", flag_values=fv)
  flags.DEFINE_list("seeds", None, "Seeds of every run instead of each "
                    "table's own (" + ", ".join(
                        f"{g.name} {','.join(map(str, g.seeds))}"
                        for g in settings.GROUPS) + ").", flag_values=fv)
  flags.DEFINE_bool("dry_run", False, "Print the commands of the runs that "
                    "would be launched; launch nothing, write nothing.",
                    flag_values=fv)
  flags.DEFINE_bool("report_only", False, "No training: record every run "
                    "found under --root, then write the report from the "
                    "records.", flag_values=fv)
  flags.DEFINE_integer("jobs", 1, "Runs trained at the same time.",
                       lower_bound=1, flag_values=fv)
  flags.DEFINE_list("reuse_from", list(Options.reuse_from),
                    "Folders searched (two levels deep) for finished runs "
                    "made outside the study with exactly a study run's "
                    "settings; those are recorded and reported instead of "
                    "being trained again. Empty: none.", flag_values=fv)


def options_from_flags(fv: flags.FlagValues = flags.FLAGS) -> Options:
  try:
    seeds = (None if fv.seeds is None else
             tuple(int(s) for s in fv.seeds))
  except ValueError as e:
    raise app.UsageError(f"--seeds takes integers: {fv.seeds}") from e
  return Options(
      root=fv.root, report=fv.report, figures_dir=fv.figures_dir,
      records=fv.records,
      steps={g.name: fv[f"steps_{g.name}"].value for g in settings.GROUPS},
      eval_every=fv.eval_every, only=tuple(fv.only),
      datasets=tuple(fv.datasets) if fv.datasets else None, seeds=seeds,
      dry_run=fv.dry_run, report_only=fv.report_only, jobs=fv.jobs,
      reuse_from=tuple(p for p in fv.reuse_from if p))


def main(argv: Sequence[str]):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if flags.FLAGS.dry_run and flags.FLAGS.report_only:
    raise app.UsageError("--dry_run and --report_only do not go together.")
  sys.exit(launch.run_study(options_from_flags(flags.FLAGS)))


define_flags()

if __name__ == "__main__":
  app.run(main)
