"""``--strategy=multi_worker``: two worker processes on 127.0.0.1.

One group of runs of ``python -m experiments.bernoulli_vae`` (XLA on, the
default), shared by the tests of this module:

* session 1: two workers (``TF_CONFIG`` with ``worker`` 0 and 1: worker 0
  is the chief) train 2 steps into one logdir, checkpoint at step 2;
* meanwhile, the reference: the same flags with ``--strategy=mirrored`` on
  two logical CPUs of one process (the same two replicas), 4 steps;
* session 2: the group restarts with 4 steps, now described with a
  ``chief`` task and a ``worker`` 0, and resumes from the chief's
  checkpoint.

The non-chief worker keeps its checkpoints outside the logdir
(``$TF_DISCRETE_WORKER_CHECKPOINTS``), so its weights can be compared with
the chief's. The checks: both workers end with the same weights; they equal
the mirrored run's (replica r draws the same batch share and seeds under
either strategy); only the chief wrote the logdir (every worker runs the
binary under a Python audit hook that records its writes there; the
TensorBoard event files, written by TensorFlow's C++, carry the writer's
pid); the restarted group resumed at step 2.
"""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from experiments import cli
from experiments.training import distribute
from experiments.training import outputs
from tests import support

FLAGS = ("--dataset=synthetic", "--batch_size=8", "--num_eval_samples=2",
         "--eval_every=2", "--log_every=2", "--checkpoint_every=2",
         "--seed=3")
# Each run's wall-clock limit (a broken collective would otherwise hang).
TIMEOUT = 300

# --strategy=mirrored over two logical CPUs: the binary's own main (runpy),
# after the device split that must precede TensorFlow's start.
MIRRORED = r"""
import runpy, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
sys.argv = ["bernoulli_vae", *sys.argv[1:]]
runpy.run_module("experiments.bernoulli_vae", run_name="__main__")
"""

# The binary's own main, recording what the process writes under the logdir
# (argv[1]) from Python -- opens for writing, renames, removals, new
# folders -- into argv[2] (JSON) at its end.
AUDITED = r"""
import atexit, json, os, runpy, sys
logdir, record = os.path.abspath(sys.argv[1]), sys.argv[2]
WRITE = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
EVENTS = ("os.rename", "os.remove", "os.rmdir", "os.mkdir", "shutil.rmtree")
writes = []

def inside(path):
  try:
    path = os.path.abspath(os.fsdecode(path))
  except TypeError:  # A file descriptor.
    return False
  return path == logdir or path.startswith(logdir + os.sep)

def hook(event, args):
  if event == "open" and args[2] & WRITE and inside(args[0]):
    writes.append([event, os.fsdecode(args[0])])
  elif event in EVENTS:
    # A rename's source and destination; the path of the others.
    paths = args[:2] if event == "os.rename" else args[:1]
    writes.extend([event, os.fsdecode(p)] for p in paths if inside(p))

def save():
  with open(record, "w") as f:
    json.dump(writes, f)

atexit.register(save)
sys.addaudithook(hook)
sys.argv = ["bernoulli_vae", *sys.argv[3:]]
runpy.run_module("experiments.bernoulli_vae", run_name="__main__")
"""


def _free_ports(n):
  sockets = [socket.socket() for _ in range(n)]
  try:
    for s in sockets:
      s.bind(("127.0.0.1", 0))
    return [s.getsockname()[1] for s in sockets]
  finally:
    for s in sockets:
      s.close()


def _start(command, env, out_path):
  with open(out_path + ".out", "w") as out, open(out_path + ".err",
                                                 "w") as err:
    return subprocess.Popen(command, cwd=support.ROOT,
                            env={**support.ENV, **env}, stdout=out,
                            stderr=err)


def _finish(processes, out_paths):
  """Waits for every process (killing the rest on a timeout); their
  stdout texts. Fails with the stderr tails unless all exited with 0."""
  try:
    for p in processes:
      p.wait(timeout=TIMEOUT)
  except subprocess.TimeoutExpired:
    pass
  finally:
    for p in processes:
      if p.poll() is None:
        p.kill()
        p.wait()
  texts = []
  for p, path in zip(processes, out_paths):
    with open(path + ".out") as f:
      texts.append(f.read())
    if p.returncode != 0:
      with open(path + ".err") as f:
        err = f.read()
      pytest.fail(f"{path}: exit status {p.returncode}\n{texts[-1][-2000:]}"
                  f"\n{err[-4000:]}")
  return texts


def _start_group(tasks, args, base, logdir, worker_checkpoints):
  """Starts one process per ``(type, index)`` task of a fresh cluster,
  each recording its writes in ``logdir`` to ``<path>.writes``."""
  ports = _free_ports(len(tasks))
  cluster = {}
  for (kind, _), port in zip(tasks, ports):
    cluster.setdefault(kind, []).append(f"127.0.0.1:{port}")
  processes, paths = [], []
  for kind, index in tasks:
    tf_config = {"cluster": cluster, "task": {"type": kind, "index": index}}
    paths.append(f"{base}-{kind}{index}")
    processes.append(_start(
        [sys.executable, "-c", AUDITED, logdir, paths[-1] + ".writes",
         *args],
        {distribute.TF_CONFIG_ENV: json.dumps(tf_config),
         outputs.WORKER_CHECKPOINTS_ENV: worker_checkpoints}, paths[-1]))
  return processes, paths


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  root = tmp_path_factory.mktemp("multi_worker")
  logdir, mirrored = str(root / "run"), str(root / "mirrored")
  kept = str(root / "worker_checkpoints")
  common = (*FLAGS, "--strategy=multi_worker", f"--logdir={logdir}")

  first, first_paths = _start_group(
      [("worker", 0), ("worker", 1)], (*common, "--num_steps=2"),
      str(root / "s1"), logdir, kept)
  reference = _start(
      [sys.executable, "-c", MIRRORED, *FLAGS, "--strategy=mirrored",
       "--num_steps=4", f"--logdir={mirrored}"], {}, str(root / "mirrored"))
  first_out = _finish(first + [reference],
                      first_paths + [str(root / "mirrored")])
  second, second_paths = _start_group(
      [("chief", 0), ("worker", 0)], (*common, "--num_steps=4"),
      str(root / "s2"), logdir, kept)
  second_out = _finish(second, second_paths)

  def writes(path):
    with open(path + ".writes") as f:
      return [name for _, name in json.load(f)]

  return dict(
      chief_writes=[writes(first_paths[0]), writes(second_paths[0])],
      worker_writes=[writes(first_paths[1]), writes(second_paths[1])],
      logdir=logdir, mirrored=mirrored, kept=kept,
      chief_pids=[first[0].pid, second[0].pid],
      first=first_out[:2], second=second_out)


def _tensors(prefix):
  """``{key: array}`` of a checkpoint, without the wall-clock train time
  (each worker adds its own)."""
  reader = tf.train.load_checkpoint(prefix)
  return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()
          if "train_time" not in k and k != "_CHECKPOINTABLE_OBJECT_GRAPH"}


def _rows(logdir):
  with open(os.path.join(logdir, outputs.METRICS_FILE)) as f:
    return [json.loads(line) for line in f if line.strip()]


def test_both_workers_end_with_the_same_weights(runs):
  chief = _tensors(os.path.join(runs["logdir"], "checkpoints", "ckpt-4"))
  # Session 2's non-chief task is worker 0; session 1's was worker 1.
  worker = _tensors(os.path.join(runs["kept"], "worker-0", "ckpt-4"))
  assert sorted(worker) == sorted(chief)
  assert any("model" in k for k in chief) and len(chief) > 10
  for key, value in chief.items():
    np.testing.assert_array_equal(worker[key], value, err_msg=key)
  assert os.path.exists(os.path.join(runs["kept"], "worker-1", "ckpt-2.index"))


def test_matches_mirrored_run_with_as_many_replicas(runs):
  chief = _tensors(os.path.join(runs["logdir"], "checkpoints", "ckpt-4"))
  mirrored = _tensors(os.path.join(runs["mirrored"], "checkpoints", "ckpt-4"))
  assert sorted(mirrored) == sorted(chief)
  start = _tensors(os.path.join(runs["mirrored"], "checkpoints", "ckpt-2"))
  moved = 0
  for key, value in chief.items():
    np.testing.assert_allclose(value, mirrored[key], rtol=1e-5, atol=1e-6,
                               err_msg=key)
    moved += not np.array_equal(start[key], mirrored[key])
  assert moved > 10  # The weights did change in steps 3 and 4.
  rows, reference = _rows(runs["logdir"]), _rows(runs["mirrored"])
  assert [r["step"] for r in rows] == [r["step"] for r in reference]
  for row, ref in zip(rows, reference):
    for key in ("train_elbo", "valid_iwae", "test_iwae", "grad_variance",
                "train_objective"):
      if key in ref:
        np.testing.assert_allclose(row[key], ref[key], rtol=1e-5,
                                   err_msg=(row["step"], key))
  with open(os.path.join(runs["logdir"], outputs.SUMMARY_FILE)) as f:
    assert json.load(f)["replicas"] == 2


def test_only_the_chief_writes_the_logdir(runs):
  logdir = runs["logdir"]
  assert runs["worker_writes"] == [[], []]
  for writes in runs["chief_writes"]:  # The record does see writes.
    for name in (outputs.LOCK_FILE, outputs.CONFIG_FILE, outputs.SUMMARY_FILE,
                 outputs.METRICS_FILE + ".tmp"):
      assert os.path.join(logdir, name) in writes, (name, writes)
  names = set(os.listdir(logdir))
  events = sorted(n for n in names if n.startswith("events.out.tfevents"))
  assert names - set(events) == {
      outputs.LOCK_FILE, outputs.CHECKPOINT_DIR, outputs.CONFIG_FILE,
      outputs.METRICS_FILE, outputs.SUMMARY_FILE, outputs.CURVES_FILE}
  # events.out.tfevents.<time>.<host>.<pid>.<n>.v2: one file per session,
  # by that session's chief.
  assert sorted(int(n.split(".")[-3]) for n in events) == sorted(
      runs["chief_pids"])
  assert sorted(os.listdir(os.path.join(logdir, outputs.CHECKPOINT_DIR))) == [
      "checkpoint", "ckpt-2.data-00000-of-00001", "ckpt-2.index",
      "ckpt-4.data-00000-of-00001", "ckpt-4.index"]
  assert sorted(os.listdir(runs["kept"])) == ["worker-0", "worker-1"]
  with open(os.path.join(logdir, outputs.LOCK_FILE)) as f:
    assert f.read() == ""  # Released by the chief at its end.
  for chief in (runs["first"][0], runs["second"][0]):
    assert f"outputs in {logdir}" in chief
  assert "worker:1 is not the chief" in runs["first"][1]
  assert "worker:0 is not the chief" in runs["second"][1]


def test_restarted_group_resumes_from_the_chiefs_checkpoint(runs):
  resumed = f"Resumed {os.path.join(runs['logdir'], 'checkpoints', 'ckpt-2')}"
  for text in runs["second"]:
    assert f"{resumed} at step 2" in text
    assert "step 4/4" in text and "step 0 " not in text
  for text in runs["first"]:
    assert "Resumed" not in text and "step 2/2" in text
  assert [r["step"] for r in _rows(runs["logdir"])] == [0, 2, 4]


def test_tf_config_is_required_and_checked(monkeypatch):
  monkeypatch.delenv(distribute.TF_CONFIG_ENV, raising=False)
  with pytest.raises(distribute.ClusterConfigError, match="needs \\$TF_CONFIG"):
    distribute.make_strategy("multi_worker")
  assert issubclass(distribute.ClusterConfigError, cli.UserError)
  worker = {"type": "worker", "index": 0}
  for value, match in [
      ("{", "not JSON"),
      ("[]", "not a JSON object"),
      (json.dumps({"task": worker}), 'no "cluster"'),
      (json.dumps({"cluster": {"worker": ["a:1"]}}), 'no "task"'),
      (json.dumps({"cluster": {"worker": ["a"]}, "task": worker}),
       "host:port"),
      (json.dumps({"cluster": {"worker": ["a:1"], "ps": ["b:2"]},
                   "task": worker}), "task types \\['ps'\\]"),
      (json.dumps({"cluster": {"worker": ["a:1"]},
                   "task": {"type": "chief", "index": 0}}), "task type"),
      (json.dumps({"cluster": {"worker": ["a:1"]},
                   "task": {"type": "worker", "index": 1}}), "task index"),
  ]:
    with pytest.raises(distribute.ClusterConfigError, match=match):
      distribute.cluster_config({distribute.TF_CONFIG_ENV: value})
  config = {"cluster": {"chief": ["a:1"], "worker": ["b:2"]}, "task": worker}
  assert distribute.cluster_config(
      {distribute.TF_CONFIG_ENV: json.dumps(config)}) == config
  with pytest.raises(ValueError, match="needs strategy 'tpu'"):
    distribute.make_strategy("multi_worker", tpu="x")


def test_single_process_strategies_are_the_chief():
  strategy = tf.distribute.get_strategy()
  assert distribute.is_chief(strategy)
  assert distribute.task_name(strategy) == ""
  distribute.check_workers_agree(strategy, "anything", 7)  # A no-op.
