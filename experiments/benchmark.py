r"""Times the training step of the VAE binaries, estimator by estimator.

    python -m experiments.benchmark                      # every case
    python -m experiments.benchmark --families=bernoulli --estimators=disarm,rloo \
        --encoder_types=nonlinear --num_layers=1 --json=/tmp/bench.json

For each case (estimator x encoder type x stochastic layers; categorical
cases at V x C = 20 x 10, batch 200) it builds the trainer with the
binary's own ``build_trainer`` (``experiments.bernoulli_vae`` /
``experiments.categorical_vae``: the code path of a real run, not a copy),
compiles the multi-step training loop, and times calls of ``--steps`` steps
(by default as many as one call of a real run makes: 1,000 Bernoulli steps,
one 250-step epoch of the categorical VAE), best of ``--repeats``. In the
same process, the calls interleaved, it times two yardsticks of the same
networks at the same batch:

- the **bare pass**: an XLA-compiled forward+backward pass, the encoder
  once and the decoder on two samples, with no estimator, optimizer, data
  pipeline or bookkeeping; ``step / bare`` is the overhead over the floor
  of a two-evaluation pass;
- the **bare pass plus the update**: the same pass followed by the
  optimizers' update of every weight (fresh optimizers configured like the
  trainer's), the weights changing every step as in training: the floor
  of a two-evaluation training step with these optimizers.
  ``step / (bare + update)`` is what the estimator, the data and the
  bookkeeping add to it.

One-layer DisARM cases are also timed against RLOO with K = 2 (the same
two evaluations, the same flags otherwise) and against the official-style
step of ``experiments.official_style``. Ratios are what to compare across
machines and runs: their numbers come from one process, timed alternately.

Each case runs in its own subprocess (``--isolate``, the default) so that
the peak memory column is that case's alone: the peak resident set size of
the process on CPU, the peak device memory on a GPU. ``--eval`` (default)
also times one full evaluation per model (the 1-sample train ELBO over the
training set and the ``num_eval_samples``-sample bounds over validation and
test), after a warm-up evaluation that compiles it.

Numbers are wall-clock and depend on what else the machine runs; the table
header names the machine.
"""

import dataclasses
import fnmatch
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from typing import (Any, Callable, Dict, List, Mapping, Optional,
                    Sequence, Tuple)

from absl import logging
import keras
import tensorflow as tf

from experiments import bernoulli_vae
from experiments import cli
from experiments import categorical_vae
from experiments import hardware
from experiments import official_style
from experiments import xla_profile
from experiments.cli import Flag
from experiments.models import estimator_state
from experiments.models import networks
from experiments.training import step as training_step
from tf_discrete import _core
from tf_discrete import bernoulli
from tf_discrete import categorical

FAMILIES = ("bernoulli", "categorical")

FLAG_SPECS = {
    "families": Flag("list", list(FAMILIES), "Families to time."),
    "estimators": Flag("list", ["*"],
                       "Estimator names or glob patterns (both families)."),
    "encoder_types": Flag("list", list(networks.ENCODER_TYPES),
                          "Encoder/decoder types."),
    "num_layers": Flag("list", ["1", "4"],
                       "Stochastic layers of the Bernoulli VAE."),
    "decoder_grads": Flag(
        "list", [networks.ESTIMATOR_SAMPLES],
        "Decoder-gradient protocols of the Bernoulli VAE to time "
        f"({', '.join(networks.DECODER_GRADS)})."),
    "dataset": Flag(
        "enum", "dynamic_mnist",
        "Data of the timed runs (synthetic needs no files).",
        dict(enum_values=["dynamic_mnist", "fashion_mnist", "omniglot",
                          "synthetic"])),
    "manual_dir": Flag("string", None, "Raw data folder (default: "
                       "TF_DISCRETE_MANUAL_DIR)."),
    "steps": Flag(
        "integer", 0, "Training steps per timed call; 0: as many as one call "
        "of a real run with the binary's defaults (the steps to its first "
        "log, evaluation, checkpoint or epoch end). Estimators of more than "
        "10 evaluations per step use a tenth.", dict(lower_bound=0)),
    "repeats": Flag("integer", 5, "Timed calls per case; the best counts.",
                    dict(lower_bound=1)),
    "eval": Flag("bool", True, "Also time one full evaluation per model."),
    "isolate": Flag("bool", True,
                    "One subprocess per case (per-case peak memory)."),
    "json": Flag("string", None, "Also write the rows to this JSON file."),
    "profile_dir": Flag(
        "string", None, "Also profile one call of each case's step and bare "
        "pass into <profile_dir>/<case>/{step,bare} (TensorBoard traces) and "
        "print their time by XLA instruction opcode (the processes get "
        f"XLA_FLAGS={xla_profile.TRACE_FLAG})."),
    "worker": Flag("string", None, "Internal: time one case given as JSON."),
}


#: Per family: the binary, the estimator registry, the batch of the
#: protocol, and fixed flags of the timed runs.
_BINARIES = {
    "bernoulli": (bernoulli_vae, bernoulli, 50,
                  dict(demean_input=True, initialize_with_bias=True)),
    "categorical": (categorical_vae, categorical, 200,
                    dict(demean_input=True, initialize_with_bias=True,
                         one_hot=True, num_variables=20, num_categories=10)),
}
# Cases of more evaluations per step time a tenth of the steps per call.
_MANY_EVALUATIONS = 10


@dataclasses.dataclass(frozen=True)
class Case:
  """One timed configuration."""
  family: str
  estimator: str
  encoder_type: str
  num_layers: int = 1
  decoder_grad: Optional[str] = None

  @property
  def has_yardsticks(self) -> bool:
    """One-layer DisARM: also timed against RLOO (K = 2) and the
    official-style step."""
    return (self.family == "bernoulli" and self.estimator == "disarm"
            and self.num_layers == 1
            and self.decoder_grad in (None, networks.ESTIMATOR_SAMPLES))

  @property
  def label(self) -> str:
    layers = f" L{self.num_layers}" if self.family == "bernoulli" else ""
    grad = (f" ({self.decoder_grad})"
            if self.decoder_grad == networks.SEPARATE_SAMPLE else "")
    return f"{self.family} {self.estimator} {self.encoder_type}{layers}{grad}"

  def flag_values(self, dataset: str, manual_dir: Optional[str],
                  logdir: str) -> Dict[str, Any]:
    binary, _, batch_size, fixed = _BINARIES[self.family]
    values = binary.default_flag_values()
    values.update(fixed, dataset=dataset, manual_dir=manual_dir,
                  grad_type=self.estimator, encoder_type=self.encoder_type,
                  batch_size=batch_size, logdir=logdir)
    if self.family == "bernoulli":
      values["num_layers"] = self.num_layers
    if self.decoder_grad is not None:
      values["decoder_grad"] = self.decoder_grad
    return values


def cases(families: Sequence[str], patterns: Sequence[str],
          encoder_types: Sequence[str], num_layers: Sequence[int],
          decoder_grads: Sequence[str]) -> List[Case]:
  """Every valid combination; combinations the binary rejects are skipped."""
  found = []
  for family in families:
    binary, registry, _, _ = _BINARIES[family]
    names = [n for n in registry.available()
             if any(fnmatch.fnmatch(n, p) for p in patterns)]
    layer_options = num_layers if family == "bernoulli" else [1]
    grad_options = decoder_grads if family == "bernoulli" else [None]
    for name in names:
      # An estimator that differentiates the objective in its samples trains
      # the decoder on them (the only protocol the models accept for it).
      grads = ([networks.ESTIMATOR_SAMPLES]
               if registry.get(name).facts.needs_objective_gradient
               else grad_options)
      for encoder_type in encoder_types:
        for layers in layer_options:
          for grad in grads:
            case = Case(family, name, encoder_type, layers, grad)
            try:
              binary.check_flags(case.flag_values("synthetic", None, "/tmp"))
            except ValueError:
              continue  # E.g. VIMCO with 4 layers: not a valid run.
            found.append(case)
  return found


# ---------------------------------------------------------------------------
# The bare pass.
# ---------------------------------------------------------------------------


def _bernoulli_bare_elbo(model, x, seed):
  shape = [2, x.shape[0], model.config.latent_dim]
  uniforms = [_core.uniform(shape, s, tf.float32)
              for s in _core.split_seed(seed, model.config.num_layers)]
  samples, logits = model.sample_chain(0, x, uniforms)
  return model.elbo_terms(0, x, samples, logits, pathwise_log_q=True)


def _categorical_bare_elbo(model, x, seed):
  logits = model.encoder_logits(x)
  samples = categorical.sample(logits, seed, num_samples=2)
  return model.elbo(x, samples, logits)


_BARE_ELBO = {"bernoulli": _bernoulli_bare_elbo,
              "categorical": _categorical_bare_elbo}


def bare_loop(family: str, model, x: tf.Tensor,
              updates: Optional[Mapping[str, Tuple[Any, Sequence[tf.Variable]]]]
              = None) -> Callable[[tf.Tensor], Any]:
  """``n -> gradients``: n bare forward+backward passes in one XLA call.

  The gradients come as a list over the variables of the model's parameter
  groups (but the control-variate group), or with ``updates`` as
  ``{group: list}``.

  The pass: the ELBO of two samples from q (encoder once per image, decoder
  on both samples) and its gradient w.r.t. every trainable variable (the
  pathwise gradient, including that of -log q). The loop carries the last
  pass's gradients out, so that none of the work is dead code and nothing
  is added to it (summing them would cost a pass over every weight's size).

  With ``updates`` (``{group: (optimizer, variables)}``, covering the
  model's trainable variables) every pass also applies its gradient with
  those optimizers: the floor of any training step of these networks, the
  bare pass plus the parameter update, with weights that change every step
  as they do in training.
  """
  # The networks' weights: an estimator's control-variate parameters have
  # no part in the bare pass.
  updates = {name: update for name, update in (updates or {}).items()
             if name != estimator_state.CONTROL_VARIATE_GROUP}
  variables = ({name: list(group) for name, (_, group) in updates.items()}
               if updates else
               [v for name, group in model.parameter_groups().items()
                if name != estimator_state.CONTROL_VARIATE_GROUP
                for v in group])
  elbo = _BARE_ELBO[family]

  @tf.function(jit_compile=True)
  def loop(num_steps):
    def body(i, _):
      with tf.GradientTape() as tape:
        loss = -tf.reduce_mean(elbo(model, x, tf.stack([i, 0])))
      grads = tape.gradient(loss, variables)
      for name, (optimizer, group) in updates.items():
        training_step.apply_gradients(optimizer, grads[name], group)
      return i + 1, grads
    return tf.while_loop(
        lambda i, _: i < num_steps, body,
        (tf.constant(0), tf.nest.map_structure(tf.zeros_like, variables)))[1]

  return loop


def fresh_updates(trainer) -> Dict[str, Tuple[Any, Sequence[tf.Variable]]]:
  """A new optimizer like each of ``trainer``'s, built on its group."""
  updates = {}
  for name, optimizer in trainer.optimizers.items():
    fresh = type(optimizer).from_config(optimizer.get_config())
    fresh.build(trainer.groups[name])
    updates[name] = (fresh, trainer.groups[name])
  return updates


def decoder_floor(trainer, jit_compile: bool = True
                  ) -> Callable[[], tf.Tensor]:
  """The evaluation's decoder-to-pixel layer alone, as one compiled call.

  For every evaluation set, images x samples rows of binary codes go
  through the decoder of the first stochastic layer (``decoder_logits(0,
  .)``), in the chunks the evaluation uses, and the logits are summed: the
  matmuls any evaluation of these bounds must do, without the encoder,
  sampling or likelihood. Bernoulli VAE only. ``jit_compile=False`` runs
  it as a TensorFlow graph instead (oneDNN matmuls on CPU).
  """
  model = trainer.model
  plans = [(trainer.evaluator.chunks(s), s.num_samples) for s in trainer.eval_sets]
  latent_dim = model.config.latent_dim

  @tf.function(jit_compile=jit_compile)
  def floor():
    total = tf.constant(0.0)
    for (chunk, num_chunks), num_samples in plans:
      pattern = (tf.range(chunk * num_samples)[:, None]
                 + tf.range(latent_dim)[None])
      for c in tf.range(num_chunks):
        # Codes that change with the chunk, so XLA cannot hoist the matmul.
        codes = tf.cast((pattern + c) % 2, tf.float32)
        total += tf.reduce_sum(model.decoder_logits(0, codes))
    return total

  return floor


# ---------------------------------------------------------------------------
# Timing.
# ---------------------------------------------------------------------------


def best_seconds(fns: Sequence[Callable[[], Any]],
                 repeats: int) -> List[float]:
  """Least wall time of ``repeats`` calls of each of ``fns`` (after one
  warm-up each), the calls interleaved (a, b, a, b, ...) so that a change
  in the machine's load hits every function alike and their ratios stay
  fair on a shared machine."""
  for fn in fns:
    fn()
  best = [float("inf")] * len(fns)
  for _ in range(repeats):
    for i, fn in enumerate(fns):
      start = time.perf_counter()
      fn()
      best[i] = min(best[i], time.perf_counter() - start)
  return best


def _peak_memory_mb() -> Optional[float]:
  gpus = tf.config.list_logical_devices("GPU")
  if gpus:
    return tf.config.experimental.get_memory_info(gpus[0].name)["peak"] / 2**20
  # ru_maxrss is in KiB on Linux.
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def evaluations_per_step(case: Case, trainer) -> int:
  """Objective evaluations of one training step (all layers' estimates,
  plus the separate sample's pass when the decoder gradient needs one)."""
  config = trainer.model.config
  count = config.evaluations * getattr(config, "num_layers", 1)
  return count + int(config.decoder_grad == networks.SEPARATE_SAMPLE)


def _fetch(tensors):
  """Host copies of a nest of tensors (waits for them)."""
  return tf.nest.map_structure(lambda t: t.numpy(), tensors)


def _train_loop(binary, values: Dict[str, Any]):
  """The binary's trainer for ``values`` and its compiled multi-step loop,
  compiled by a first call; (trainer, loop, compile seconds)."""
  trainer = binary.build_trainer(values)
  start = time.perf_counter()
  trainer.train_steps(1)
  return trainer, trainer.train_step.fn, time.perf_counter() - start


def layer_path_loop(x: tf.Tensor, steps: int, steps_per_execution: int,
                    learning_rate: float = 1e-4) -> Callable[[], Any]:
  """``() -> loss``: ``steps`` steps of ``model.fit(images)`` on the
  README's functional VAE built from the Keras layers
  (``tf_discrete.examples.functional_bernoulli_vae``: linear encoder and
  decoder, one layer of Bernoulli latents, DisARM), compiled with
  ``jit_compile=True`` and ``steps_per_execution``, on the batch ``x``
  repeated. The same networks and estimator as the binary's linear
  one-layer DisARM step; what differs is Keras's training loop."""
  from tf_discrete import examples  # pylint: disable=g-import-not-at-top
  model = examples.functional_bernoulli_vae(
      data_dim=int(x.shape[-1]), latent_dim=200, estimator="disarm", seed=0)
  model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                jit_compile=True, steps_per_execution=steps_per_execution)
  data = tf.data.Dataset.from_tensors(x).repeat()
  model.fit(data, epochs=1, steps_per_epoch=steps, verbose=0)  # Compiles.

  def run():
    history = model.fit(data, epochs=1, steps_per_epoch=steps, verbose=0)
    return history.history["loss"][-1]

  return run


def measure(case: Case, dataset: str, manual_dir: Optional[str],
            steps: int, repeats: int, time_eval: bool,
            profile_dir: Optional[str] = None) -> Dict[str, Any]:
  """Times ``case`` in this process; one row of the table.

  Timed alternately (:func:`best_seconds`): the step; the bare pass; the
  bare pass plus the optimizers' update; for one-layer DisARM also RLOO
  with K = 2 (same evaluations, same flags otherwise) and the official-style
  step.
  """
  binary = _BINARIES[case.family][0]
  with tempfile.TemporaryDirectory() as logdir:
    values = case.flag_values(dataset, manual_dir, logdir)
    trainer, train_fn, compile_sec = _train_loop(binary, values)
    if not steps:
      steps = trainer.steps_to_next_event(0)
    if evaluations_per_step(case, trainer) > _MANY_EVALUATIONS:
      steps = max(1, steps // 10)
    num_steps = tf.constant(steps, tf.int64)
    x = trainer.train_step.batch(
        tf.constant(0, tf.int64), tf.constant([0, 1]))
    bare = bare_loop(case.family, trainer.model, x)
    bare_update = bare_loop(case.family, trainer.model, x,
                            fresh_updates(trainer))
    bare_steps = tf.constant(steps)
    timed = {"step": lambda: train_fn(num_steps).numpy(),
             "bare": lambda: _fetch(bare(bare_steps)),
             "bare_update": lambda: _fetch(bare_update(bare_steps))}
    if case.has_yardsticks:
      _, rloo_fn, _ = _train_loop(
          binary, dict(values, grad_type="rloo",
                       logdir=os.path.join(logdir, "rloo")))
      timed["rloo"] = lambda: rloo_fn(num_steps).numpy()
      official = official_style.OfficialStyleDisarm(
          case.encoder_type, trainer.model.train_mean.numpy())
      seed = tf.constant([0, 1])
      timed["official"] = lambda: [official.step(x, seed)
                                   for _ in range(steps)][-1][0].numpy()
      if case.encoder_type == "linear":
        timed["layers_1"] = layer_path_loop(x, steps, 1)
        timed["layers_all"] = layer_path_loop(x, steps, steps)
    sec = dict(zip(timed, (t / steps for t in
                           best_seconds(list(timed.values()), repeats))))
    row = dict(
        case=case.label, family=case.family, estimator=case.estimator,
        encoder_type=case.encoder_type, num_layers=case.num_layers,
        decoder_grad=trainer.model.config.decoder_grad,
        batch_size=values["batch_size"],
        evaluations=evaluations_per_step(case, trainer),
        ms_per_step=1e3 * sec["step"], steps_per_sec=1 / sec["step"],
        bare_ms=1e3 * sec["bare"], ratio_to_bare=sec["step"] / sec["bare"],
        bare_update_ms=1e3 * sec["bare_update"],
        ratio_to_bare_update=sec["step"] / sec["bare_update"],
        compile_sec=compile_sec, timed_steps=steps)
    if case.has_yardsticks:
      row.update(rloo_ms=1e3 * sec["rloo"],
                 ratio_to_rloo=sec["step"] / sec["rloo"],
                 official_ms=1e3 * sec["official"],
                 speedup_vs_official=sec["official"] / sec["step"])
      if "layers_1" in sec:
        row.update(layers_ms=1e3 * sec["layers_1"],
                   layers_all_ms=1e3 * sec["layers_all"])
    if profile_dir:
      where = os.path.join(profile_dir, re.sub(r"\W+", "_", case.label))
      row["profile"] = {
          name: dataclasses.asdict(xla_profile.profile(
              fn, (n,), os.path.join(where, name), per=steps))
          for name, fn, n in (("step", train_fn, num_steps),
                              ("bare", bare, bare_steps))}
    if time_eval:
      trainer.evaluate(0)  # Compiles.
      start = time.perf_counter()
      trainer.evaluate(0)
      row["eval_sec"] = time.perf_counter() - start
      if case.family == "bernoulli":
        floors = [decoder_floor(trainer, jit) for jit in (True, False)]
        row["eval_floor_sec"], row["eval_floor_graph_sec"] = best_seconds(
            [lambda f=f: f().numpy() for f in floors], 1)
    row["peak_memory_mb"] = _peak_memory_mb()
  return row


def machine() -> str:
  """CPU model and cores, accelerators, TensorFlow version."""
  return hardware.machine_label(hardware.machine_info())


def format_table(rows: Sequence[Dict[str, Any]]) -> str:
  """Markdown table of the rows."""
  head = ("| case | evals/step | ms/step | steps/s | bare ms | step/bare "
          "| bare+update ms | step/(bare+update) | eval s "
          "| eval decoder-only s (XLA / graph) | peak MB |")
  lines = [head, "|" + "---|" * 11]
  for r in rows:
    if "error" in r:
      lines.append(f"| {r['case']} | failed: {r['error']} ||||||||||")
      continue
    eval_sec = f"{r['eval_sec']:.1f}" if r.get("eval_sec") else ""
    floor_sec = (f"{r['eval_floor_sec']:.1f} / {r['eval_floor_graph_sec']:.1f}"
                 if r.get("eval_floor_sec") else "")
    memory = (f"{r['peak_memory_mb']:.0f}" if r.get("peak_memory_mb")
              else "")
    lines.append(
        f"| {r['case']} | {r['evaluations']} | {r['ms_per_step']:.2f} | "
        f"{r['steps_per_sec']:.0f} | {r['bare_ms']:.2f} | "
        f"{r['ratio_to_bare']:.2f} | {r['bare_update_ms']:.2f} | "
        f"{r['ratio_to_bare_update']:.2f} | {eval_sec} | {floor_sec} "
        f"| {memory} |")
  return "\n".join(lines)


def _yardstick_table(rows: Sequence[Dict[str, Any]], key: str,
                     columns: Sequence[Tuple[str, Callable[[Dict], float]]]
                     ) -> str:
  """Markdown table of the rows holding ``key``: the case, then one column
  per ``(header, row -> number)`` ("" if no row holds ``key``)."""
  timed = [r for r in rows if key in r]
  if not timed:
    return ""
  lines = ["| case | " + " | ".join(h for h, _ in columns) + " |",
           "|---" * (len(columns) + 1) + "|"]
  lines += ["| " + " | ".join([r["case"]] + [f"{fn(r):.2f}"
                                             for _, fn in columns]) + " |"
            for r in timed]
  return "\n".join(lines)


def format_official_table(rows: Sequence[Dict[str, Any]]) -> str:
  """Markdown table of DisARM against RLOO (K = 2) and the official-style
  step, timed in the same process ("" if no row was)."""
  return _yardstick_table(rows, "official_ms", (
      ("ms/step", lambda r: r["ms_per_step"]),
      ("RLOO K=2 ms/step", lambda r: r["rloo_ms"]),
      ("DisARM/RLOO", lambda r: r["ratio_to_rloo"]),
      ("official-style ms/step", lambda r: r["official_ms"]),
      ("speed-up", lambda r: r["speedup_vs_official"])))


def format_layer_path_table(rows: Sequence[Dict[str, Any]]) -> str:
  """Markdown table of the binary's step against ``model.fit`` on the Keras
  layers, same networks and estimator ("" if no row timed it)."""
  return _yardstick_table(rows, "layers_ms", (
      ("binary loop ms/step", lambda r: r["ms_per_step"]),
      ("model.fit ms/step (steps_per_execution=1)", lambda r: r["layers_ms"]),
      ("model.fit ms/step (all steps in one execution)",
       lambda r: r["layers_all_ms"]),
      ("fit / loop", lambda r: r["layers_all_ms"] / r["ms_per_step"])))


def _run_isolated(case: Case, args: Dict[str, Any]) -> Dict[str, Any]:
  spec = json.dumps({"case": dataclasses.asdict(case), **args})
  env = (xla_profile.with_trace_flag(os.environ) if args.get("profile_dir")
         else None)
  proc = subprocess.run(
      [sys.executable, "-m", "experiments.benchmark", f"--worker={spec}"],
      capture_output=True, text=True, check=False, env=env)
  for line in reversed(proc.stdout.splitlines()):
    if line.startswith("{"):
      return json.loads(line)
  tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
  return {"case": case.label, "error": tail[:200]}


def check_flags(values):
  """Raises ValueError for flags that select nothing."""
  unknown = set(values["families"]) - set(FAMILIES)
  if unknown:
    raise ValueError(f"--families must be among {FAMILIES}, got "
                     f"{sorted(unknown)}.")
  if not values["worker"] and not _selected(values):
    raise ValueError("No case matches the flags.")


def _selected(values):
  return cases(values["families"], values["estimators"],
               values["encoder_types"],
               [int(n) for n in values["num_layers"]],
               values["decoder_grads"])


def main(values):
  if values["worker"]:
    spec = json.loads(values["worker"])
    case = Case(**spec.pop("case"))
    print(json.dumps(measure(case, **spec)))
    return
  selected = _selected(values)
  if values["profile_dir"] and not values["isolate"]:
    # Read when XLA first compiles, which has not happened yet.
    os.environ.update(xla_profile.with_trace_flag(os.environ))
  timed_eval = set()
  rows = []
  print(f"Machine: {machine()}; {len(selected)} cases.", flush=True)
  for case in selected:
    model_key = (case.family, case.encoder_type, case.num_layers)
    args = dict(dataset=values["dataset"], manual_dir=values["manual_dir"],
                steps=values["steps"], repeats=values["repeats"],
                time_eval=values["eval"] and model_key not in timed_eval,
                profile_dir=values["profile_dir"])
    timed_eval.add(model_key)
    if values["isolate"]:
      row = _run_isolated(case, args)
    else:
      row = measure(case, **args)
    rows.append(row)
    if "error" in row:
      logging.error("%s failed: %s", case.label, row["error"])
    else:
      print(f"{case.label}: {row['ms_per_step']:.2f} ms/step "
            f"(bare {row['bare_ms']:.2f} ms, x{row['ratio_to_bare']:.2f}; "
            f"bare+update {row['bare_update_ms']:.2f} ms, "
            f"x{row['ratio_to_bare_update']:.2f})", flush=True)
      for name, found in row.get("profile", {}).items():
        print(f"  {name} profile, per step: "
              f"{xla_profile.Breakdown(**found).summary()}", flush=True)
  print(f"\nMachine: {machine()}\n")
  print(format_table(rows))
  official = format_official_table(rows)
  if official:
    print("\nOne-layer DisARM against RLOO with K = 2 (same evaluations) and "
          "the official-style step (experiments/official_style.py: Keras "
          "Dense, no XLA, one step per Python call, three decoder passes), "
          "timed in the same process:\n")
    print(official)
  layer_path = format_layer_path_table(rows)
  if layer_path:
    print("\nThe same linear one-layer DisARM VAE built from the Keras layers "
          "(tf_discrete.examples.functional_bernoulli_vae) and trained with "
          "model.fit(images), jit_compile=True, timed in the same process:\n")
    print(layer_path)
  if values["json"]:
    with open(values["json"], "w") as f:
      json.dump({"machine": machine(), "rows": rows}, f, indent=1)


if __name__ == "__main__":
  cli.run_program(FLAG_SPECS, main, check_flags)
