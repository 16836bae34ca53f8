"""Gradient variance and bias of every estimator on the shared test problems.

    python -m experiments.estimator_variance --num_runs=100000

The problems are the ones the unbiasedness tests use
(``tf_discrete.diagnostics.BERNOULLI_PROBLEM``: five units with logits
(0.3, -1.2, 6, -6, 2) and a non-linear objective with pairwise
interactions; ``diagnostics.categorical_problem(4)``: two coupled variables
of 4 categories). For every registered estimator of each family, at its
default cost, it prints the objective evaluations, whether the estimator
declares itself unbiased, the gradient variance averaged over the logit
coordinates, the relative bias of the mean gradient against the exact
enumerated one (with the level that Monte Carlo noise alone would give),
and the largest |z| of the mean. Estimators of a K-sample bound are
compared with the gradient of that bound. ``--markdown`` prints the tables
as the README and docs/estimators.md show them;
``--write=README.md,docs/estimators.md`` rewrites those pages' marked blocks
(``<!-- variance:<family> -->`` ... ``<!-- /variance:<family> -->``) with
the default flags' tables.
"""

import re

from experiments import cli
from experiments.cli import Flag
from tf_discrete import bernoulli
from tf_discrete import categorical
from tf_discrete import diagnostics

import numpy as np

FAMILIES = {"bernoulli": (bernoulli, diagnostics.BERNOULLI_PROBLEM),
            "categorical": (categorical, diagnostics.categorical_problem(4))}

# The pages that show the tables (a test checks them against the command).
DOCS = ("README.md", "docs/estimators.md")
FLAG_SPECS = {
    "num_runs": Flag("integer", 100_000, "Independent estimates.",
                     dict(lower_bound=2)),
    "seed": Flag("integer", 0, "Stateless seed."),
    "families": Flag("list", list(FAMILIES), "Families to measure."),
    "markdown": Flag("bool", False, "Print markdown tables."),
    "write": Flag("list", [], "Rewrite the marked variance blocks of these "
                  "markdown files (the project's: " + ",".join(DOCS) + ")."),
}

COMMAND = "python -m experiments.estimator_variance --num_runs=100000"

COLUMNS = ("estimator", "evaluations", "declared unbiased", "mean Var[g]",
           "relative bias", "noise level", "max abs z")


def rows(family: str, num_runs: int, seed: int):
  """One row (a tuple of COLUMNS values) per registered estimator."""
  module, problem = FAMILIES[family]
  event_shape = list(problem.logits.shape)
  out = []
  for name, est in module.REGISTRY.items():
    evaluations = est.evaluations(None, event_shape)
    stats = diagnostics.estimator_stats(
        problem.objective, problem.logits, name, family=family,
        num_runs=num_runs, seed=seed,
        bound_samples=est.facts.bound_terms(evaluations))
    out.append((name, evaluations, "yes" if est.facts.unbiased else "no",
                stats.mean_grad_var, stats.relative_bias,
                stats.relative_noise, float(np.max(np.abs(stats.grad_z)))))
  return out


def format_rows(table, markdown: bool) -> str:
  def cells(row):
    name, evals, unbiased, var, bias, noise, z = row
    return [name, str(evals), unbiased, f"{var:.4g}", f"{bias:.2%}",
            f"{noise:.2%}", f"{z:.1f}"]
  if markdown:
    lines = ["| " + " | ".join(COLUMNS) + " |",
             "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(cells(r)) + " |" for r in table]
  else:
    lines = [f"{COLUMNS[0]:<14}" + "".join(f"{c:>18}" for c in COLUMNS[1:])]
    lines += [f"{c[0]:<14}" + "".join(f"{x:>18}" for x in c[1:])
              for c in map(cells, table)]
  return "\n".join(lines)


def block(family: str, num_runs: int, seed: int) -> str:
  """The marked markdown block of ``family``'s table."""
  _, problem = FAMILIES[family]
  return (f"<!-- variance:{family} -->\n"
          f"{problem.description}; {num_runs:,} estimates per estimator, "
          f"seed {seed} (`{COMMAND}`):\n\n"
          f"{format_rows(rows(family, num_runs, seed), True)}\n"
          f"<!-- /variance:{family} -->")


def _pattern(family: str) -> "re.Pattern":
  return re.compile(rf"<!-- variance:{family} -->.*?<!-- /variance:{family} -->",
                    re.S)


def blocks_in(text: str):
  """``{family: marked block}`` of a markdown text (missing: absent)."""
  return {family: m.group(0) for family in FAMILIES
          for m in [_pattern(family).search(text)] if m}


def write(path: str, num_runs: int, seed: int):
  """Rewrites the marked blocks of ``path`` in place."""
  with open(path) as f:
    text = f.read()
  for family in blocks_in(text):
    text = _pattern(family).sub(
        lambda _, f=family: block(f, num_runs, seed), text)
  with open(path, "w") as f:
    f.write(text)


def check_flags(values):
  unknown = sorted(set(values["families"]) - set(FAMILIES))
  if unknown:
    raise ValueError(f"--families: unknown {unknown}; known: "
                     f"{', '.join(FAMILIES)}.")


def main(values):
  if values["write"]:
    for path in values["write"]:
      write(path, values["num_runs"], values["seed"])
      print(f"rewrote the variance blocks of {path}")
    return
  for family in values["families"]:
    _, problem = FAMILIES[family]
    print(f"{family}: {problem.description}; {values['num_runs']} runs, "
          f"seed {values['seed']}\n")
    print(format_rows(rows(family, values["num_runs"], values["seed"]),
                      values["markdown"]))
    print()


if __name__ == "__main__":
  cli.run_program(FLAG_SPECS, main, check_flags)
