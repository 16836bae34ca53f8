"""Each estimator's facts: declared once, read by the base class, rendered
into the README's estimator tables."""

import dataclasses
import pathlib

import numpy as np
import pytest
import tensorflow as tf

import tf_discrete
from tf_discrete import _core
from tf_discrete import bernoulli
from tf_discrete import categorical
from tf_discrete import diagnostics
from tf_discrete.facts import Cost
from tf_discrete.facts import Estimates
from tf_discrete.facts import Facts
from tf_discrete.facts import Option

README = pathlib.Path(__file__).resolve().parents[2] / "README.md"

FAMILIES = {"bernoulli": bernoulli, "categorical": categorical}
EVENT_SHAPES = {"bernoulli": [5], "categorical": [2, 4]}


def _all_estimators():
  for family, module in FAMILIES.items():
    for name, estimator in module.REGISTRY.items():
      yield family, name, estimator


ALL = list(_all_estimators())
# Estimators of E_q[f] whose value is a weighted mean of the samples.
WEIGHTED_VALUE = {"unordered_set"}
IDS = [f"{family}-{name}" for family, name, _ in ALL]


# ---------------------------------------------------------------------------
# Every estimator declares its facts.
# ---------------------------------------------------------------------------


def test_public_names():
  assert tf_discrete.Facts is Facts and tf_discrete.Cost is Cost
  assert tf_discrete.Estimates is Estimates and tf_discrete.Option is Option
  assert _core.Facts is Facts


@pytest.mark.parametrize("family,name,estimator", ALL, ids=IDS)
def test_every_estimator_declares_its_own_facts(family, name, estimator):
  assert isinstance(type(estimator).__dict__.get("facts"), Facts), name
  module = FAMILIES[family]
  assert module.get(name).facts is estimator.facts
  facts = estimator.facts
  assert isinstance(facts.estimates, Estimates)
  assert isinstance(facts.cost, Cost)
  assert isinstance(facts.unbiased, bool) and facts.paper
  assert facts.option_names == tuple(o.name for o in facts.options)
  # The value is the sample mean exactly for estimators of E_q[f] whose
  # samples are each drawn from q (a without-replacement set is not: the
  # unordered-set estimator returns its weighted mean).
  overrides_value = type(estimator).value is not _core.Estimator.value
  assert overrides_value == (facts.estimates is Estimates.BOUND
                             or name in WEIGHTED_VALUE)


@pytest.mark.parametrize("family,name,estimator", ALL, ids=IDS)
def test_no_cost_or_option_rule_outside_the_facts(family, name, estimator):
  del family, name
  for old in ("default_num_samples", "min_num_samples", "even_num_samples",
              "fixed_num_samples", "option_names", "default_order",
              "use_mask"):
    assert not hasattr(estimator, old), old
  for method in ("resolve_num_samples", "evaluations", "resolve_options",
                 "check_options"):
    assert getattr(type(estimator), method) is getattr(_core.Estimator,
                                                       method), method


@pytest.mark.parametrize("family,name,estimator", ALL, ids=IDS)
def test_evaluations_follow_the_cost(family, name, estimator):
  shape = EVENT_SHAPES[family]
  cost = estimator.facts.cost
  assert estimator.evaluations(None, shape) == cost.resolve(None, shape, name)
  assert estimator.evaluations(None, shape) == cost.default_for(shape)


def test_facts_are_frozen():
  facts = bernoulli.get("disarm").facts
  with pytest.raises(dataclasses.FrozenInstanceError):
    facts.unbiased = False
  with pytest.raises(dataclasses.FrozenInstanceError):
    facts.cost.minimum = 4


def test_registry_items_sorted():
  for module in FAMILIES.values():
    items = module.REGISTRY.items()
    assert [n for n, _ in items] == module.available()
    assert all(module.get(n) is e for n, e in items)


def test_declared_facts_of_the_contract():
  """The registry's defaults and options as documented."""
  b, c = bernoulli.get, categorical.get
  assert b("vimco").facts.estimates is Estimates.BOUND
  assert b("local_disarm").facts.estimates is Estimates.BOUND
  assert b("disarm").facts.cost.multiple == 2
  assert c("rloo").facts.cost.default_for([3, 7]) == 7
  assert c("arsm").facts.cost.fixed and c("ars").facts.cost.fixed
  assert c("disarm_iw").facts.option("logits_order").default == "ascending"
  assert c("disarm_sb").facts.option("logits_order").default == "none"
  assert c("arsm_plus").facts.option("symmetry_mask").default == "reference"
  assert c("ars_plus").facts.option("symmetry_mask").default is True
  assert c("ars_plus").facts.option_names == ("symmetry_mask", "num_draws")
  assert c("arsm").facts.option_names == ("num_draws",)
  assert c("arsm").facts.cost.repeats == "num_draws"
  with pytest.raises(KeyError):
    c("arsm").facts.option("symmetry_mask")


def test_cost_descriptions():
  b, c = bernoulli.get, categorical.get
  assert b("reinforce").facts.cost.describe() == "K (default 1)"
  assert b("rloo").facts.cost.describe() == "K ≥ 2 (default 2)"
  assert b("disarm").facts.cost.describe() == "2P (default 2)"
  assert c("rloo").facts.cost.describe() == "K ≥ 2 (default C)"
  assert c("ars").facts.cost.describe() == "C × num_draws (fixed)"
  assert c("arsm").facts.cost.describe() == (
      "(C(C-1)/2 + 1) × num_draws (fixed)")


# ---------------------------------------------------------------------------
# Cost: all num_samples validation.
# ---------------------------------------------------------------------------


PAIRS = Cost(default=2, minimum=2, multiple=2, per="pair")
FIXED = Cost(default=lambda shape: shape[-1] ** 2, fixed=True, formula="C^2")


def test_cost_resolve_defaults_and_valid_values():
  assert Cost(default=1).resolve(None, [3], "x") == 1
  assert Cost(default=1).resolve(7, [3], "x") == 7
  assert Cost(default=1).resolve(np.int64(3), [3], "x") == 3
  assert PAIRS.resolve(None, [3], "x") == 2
  assert PAIRS.resolve(6, [3], "x") == 6
  assert FIXED.resolve(None, [2, 3], "x") == 9
  assert FIXED.resolve(9, [2, 3], "x") == 9


@pytest.mark.parametrize("cost,num_samples,message", [
    (Cost(default=1), 0, r"'est'.*at least 1"),
    (Cost(default=2, minimum=2), 1, r"'est'.*at least 2"),
    (PAIRS, 0, r"'est'.*at least 2"),
    (PAIRS, 5, r"'est'.*even.*pair"),
    (Cost(default=3, minimum=3, multiple=3, per="triple"), 4,
     r"'est'.*multiple of 3.*triple"),
    (FIXED, 4, r"'est'.*fixed at 9.*event shape \[2, 3\].*None or 9"),
])
def test_cost_resolve_rejects(cost, num_samples, message):
  with pytest.raises(ValueError, match=rf"`num_samples`={num_samples}.*"
                     rf"{message}"):
    cost.resolve(num_samples, [2, 3], "est")


@pytest.mark.parametrize("cost", [Cost(default=1), PAIRS, FIXED])
@pytest.mark.parametrize("num_samples", [2.0, True, np.bool_(True), "2",
                                         [2]])
def test_cost_resolve_type_errors(cost, num_samples):
  with pytest.raises(TypeError, match="`num_samples` must be a Python int"):
    cost.resolve(num_samples, [2, 3], "est")


def test_cost_construction_is_checked():
  with pytest.raises(ValueError, match="formula"):
    Cost(default=lambda shape: 2)
  with pytest.raises(ValueError, match="minimum"):
    Cost(default=1, minimum=2)
  with pytest.raises(ValueError, match="multiple"):
    Cost(default=3, minimum=2, multiple=2)


def test_estimators_validate_through_the_cost():
  """The same messages from the estimator, ``estimate`` and the cost."""
  est = categorical.get("arsm")
  for call in (lambda: est.evaluations(5, [2, 3]),
               lambda: est.facts.cost.resolve(5, [2, 3], "arsm"),
               lambda: categorical.estimate(
                   lambda z: tf.reduce_sum(z, [-2, -1]), tf.zeros([2, 3]),
                   "arsm", num_samples=5)):
    with pytest.raises(ValueError, match="'arsm'.*fixed at 4"):
      call()
  with pytest.raises(ValueError, match="power of 2"):
    categorical.get("disarm_tree").evaluations(None, [2, 3])


# ---------------------------------------------------------------------------
# Options.
# ---------------------------------------------------------------------------


FLAG = Option("flag", default=True, accepted=(True, False))
CHOICE = Option("order", default="up", accepted=(None, "up", "down"))


def test_option_check_accepts_and_canonicalizes():
  assert FLAG.check(False, "est") is False
  assert FLAG.check(np.bool_(True), "est") is True
  assert CHOICE.check("down", "est") == "down"
  assert CHOICE.check(None, "est") == "up"  # None: the default.


@pytest.mark.parametrize("option,value,error,message", [
    (FLAG, 1, TypeError, r"`flag` must be True or False for estimator 'est'"),
    (FLAG, "yes", TypeError, r"`flag` must be True or False.*'yes'"),
    (FLAG, None, TypeError, r"`flag`.*None"),
    (CHOICE, "UP", ValueError,
     r"`order` must be one of None, 'up', 'down' for estimator 'est'"),
    (CHOICE, 1, ValueError, r"`order`.*'up'"),
    (CHOICE, np.array([1, 2]), ValueError, r"`order`.*'up'"),
])
def test_option_check_rejects(option, value, error, message):
  with pytest.raises(error, match=message):
    option.check(value, "est")


def test_option_with_a_validator():
  def positive(x):
    if not isinstance(x, (int, float)) or x <= 0:
      raise ValueError(f"must be a positive number, got {x!r}")
    return float(x)

  temperature = Option("temperature", default=1.0, validate=positive)
  assert temperature.check(2, "est") == 2.0
  with pytest.raises(ValueError,
                     match="`temperature` of estimator 'est': must be a "
                     "positive number, got -1"):
    temperature.check(-1, "est")
  assert Option("anything", default=None).check([1], "est") == [1]


def test_option_default_must_be_accepted():
  with pytest.raises(ValueError, match="default"):
    Option("order", default="sideways", accepted=("up", "down"))


def test_duplicate_option_names_rejected():
  with pytest.raises(ValueError, match="Duplicate"):
    Facts(Estimates.MEAN, Cost(default=1), True, options=(FLAG, FLAG))


def test_resolve_options_fills_defaults():
  c = categorical.get
  assert c("disarm_iw").resolve_options({}) == {"logits_order": "ascending"}
  assert c("disarm_iw").resolve_options({"logits_order": None}) == {
      "logits_order": "ascending"}
  assert c("disarm_sb").resolve_options(None) == {"logits_order": "none"}
  assert c("disarm_sb").resolve_options({"logits_order": "abs"}) == {
      "logits_order": "abs"}
  assert c("arsm_plus").resolve_options({}) == {
      "symmetry_mask": "reference", "num_draws": 1}
  assert c("arsm").resolve_options({}) == {"num_draws": 1}
  assert bernoulli.get("disarm").resolve_options({}) == {}


def test_resolve_options_rejects_unknown_names():
  with pytest.raises(TypeError, match="'rloo' takes no options"):
    categorical.get("rloo").resolve_options({"logits_order": "abs"})
  with pytest.raises(TypeError, match=r"unknown options \['order'\].*"
                     "accepts: logits_order"):
    categorical.get("disarm_sb").resolve_options({"order": "abs"})


# ---------------------------------------------------------------------------
# The registry and run_estimator read the facts.
# ---------------------------------------------------------------------------


def _toy_family(registry):
  return dataclasses.replace(bernoulli.FAMILY, name="toy", registry=registry)


def test_register_requires_own_facts():
  registry = _core.Registry("toy")

  class Inherits(bernoulli.get("disarm").__class__):
    name = "inherits"

  with pytest.raises(TypeError, match="facts"):
    registry.register(Inherits)


def test_a_new_estimator_gets_validation_from_its_facts():
  """Options reach sample/gradient resolved; the cost comes from the facts."""
  registry = _core.Registry("toy")
  seen = {}

  @registry.register
  class Scaled(_core.Estimator):
    name = "scaled"
    facts = Facts(
        Estimates.MEAN, Cost(default=3, minimum=3, multiple=3, per="triple"),
        unbiased=False,
        options=(Option("scale", default=2.0,
                        validate=lambda x: float(x)),),
        paper="none")

    def sample(self, logits, num_samples, seed, scale):
      seen["sample"] = (num_samples, scale)
      shape = tf.concat([[num_samples], tf.shape(logits)], 0)
      return _core.Draw(tf.zeros(shape, logits.dtype))

    def gradient(self, values, draw, logits, scale):
      seen["gradient"] = scale
      return scale * tf.ones_like(logits)

  family = _toy_family(registry)
  logits = tf.zeros([2, 3])
  fn = lambda b: tf.reduce_sum(b, -1)
  with tf.GradientTape() as tape:
    tape.watch(logits)
    value = _core.run_estimator(family, fn, logits, "scaled", None, 0, {})
  assert seen == {"sample": (3, 2.0), "gradient": 2.0}
  np.testing.assert_array_equal(tape.gradient(value, logits), 2.0)
  _core.run_estimator(family, fn, logits, "scaled", 6, 0, {"scale": 5})
  assert seen == {"sample": (6, 5.0), "gradient": 5.0}
  with pytest.raises(ValueError, match="'scaled'.*multiple of 3"):
    _core.run_estimator(family, fn, logits, "scaled", 4, 0, {})
  with pytest.raises(TypeError, match="'scaled' got unknown options"):
    _core.run_estimator(family, fn, logits, "scaled", None, 0, {"k": 1})


@pytest.mark.parametrize("flag", ["needs_objective_gradient",
                                  "trainable_state"])
def test_run_estimator_refuses_what_it_cannot_provide(flag):
  registry = _core.Registry("toy")

  @registry.register
  class Relaxed(_core.Estimator):
    name = "relaxed"
    facts = Facts(Estimates.MEAN, Cost(default=1), unbiased=False,
                  **{flag: True})

    def sample(self, logits, num_samples, seed):
      return _core.Draw(tf.zeros([num_samples, 3]))

    def gradient(self, values, draw, logits):
      raise AssertionError("not reached")

  with pytest.raises(NotImplementedError, match="'relaxed'"):
    _core.run_estimator(_toy_family(registry), lambda b: b[..., 0],
                        tf.zeros([3]), "relaxed", None, 0, {})


# ---------------------------------------------------------------------------
# The generated tables.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("family", diagnostics.FAMILIES)
def test_readme_tables_are_generated_from_the_facts(family):
  current = diagnostics.readme_tables(README.read_text(encoding="utf-8"))
  assert current[family] is not None, (
      f"README.md lacks the '<!-- estimators:{family} -->' block")
  assert current[family] == diagnostics.estimator_table(family), (
      f"README.md's {family} estimator table is out of date; regenerate it "
      f"with: {diagnostics.UPDATE_README_COMMAND}")


@pytest.mark.parametrize("family", diagnostics.FAMILIES)
def test_table_has_a_row_per_estimator(family):
  table = diagnostics.estimator_table(family).splitlines()
  module = FAMILIES[family]
  assert len(table) == 2 + len(module.available())
  for row, (name, est) in zip(table[2:], module.REGISTRY.items()):
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[0] == f"`{name}`"
    assert cells[2] == est.facts.cost.describe()
    assert cells[-1] == est.facts.paper
  assert "`logits_order='ascending'`" in "\n".join(
      diagnostics.estimator_table("categorical").splitlines())


def test_update_readme_rewrites_only_the_blocks(tmp_path):
  readme = tmp_path / "README.md"
  text = ("# Title\n\nIntro.\n\n<!-- estimators:bernoulli -->\nstale\n"
          "<!-- /estimators:bernoulli -->\n\nMiddle.\n\n"
          "<!-- estimators:categorical -->\n"
          "<!-- /estimators:categorical -->\nEnd.\n")
  readme.write_text(text)
  assert diagnostics.update_readme(readme)
  new = readme.read_text()
  assert new.startswith("# Title\n\nIntro.\n\n<!-- estimators:bernoulli -->\n"
                        "| estimator |")
  assert "stale" not in new and "\n\nMiddle.\n\n" in new
  assert new.endswith("<!-- /estimators:categorical -->\nEnd.\n")
  assert diagnostics.readme_tables(new) == {
      f: diagnostics.estimator_table(f) for f in diagnostics.FAMILIES}
  assert not diagnostics.update_readme(readme)  # Idempotent.
  (tmp_path / "bare.md").write_text("# No blocks\n")
  with pytest.raises(ValueError, match="estimators:FAMILY"):
    diagnostics.update_readme(tmp_path / "bare.md")
