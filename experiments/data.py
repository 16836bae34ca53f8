"""Prepares datasets, or measures load times and pipeline throughput.

    python -m experiments.data --dataset=dynamic_mnist,omniglot
    python -m experiments.data --benchmark --dataset=dynamic_mnist \
        --batch_size=50,200

Without ``--benchmark`` each dataset is prepared (once) in the data
directory and summarized. With it, each dataset is first built in a fresh
temporary data directory (unless ``--data_dir`` is given) and loaded again
from that cache in the same process; then a Python loop pulls
``--num_batches`` batches of ``train_batches``.
"""

import tempfile
import time

from experiments import cli
from experiments.cli import Flag
from tf_discrete import datasets

FLAG_SPECS = {
    "dataset": Flag("list", ["dynamic_mnist"],
                    f"Data sets to prepare, comma-separated, among "
                    f"{', '.join(datasets.available())}."),
    "manual_dir": Flag("string", None,
                       f"Raw-file root (default ${datasets.MANUAL_DIR_ENV})."),
    "data_dir": Flag("string", None,
                     f"tfds data directory (default ${datasets.DATA_DIR_ENV}; "
                     f"with --benchmark a fresh temporary directory)."),
    "benchmark": Flag("bool", False,
                      "Measure load times and pipeline throughput."),
    "batch_size": Flag("list", ["50", "200"],
                       "Batch sizes of the throughput measurement."),
    "num_batches": Flag("integer", 5000,
                        "Batches pulled per throughput measurement.",
                        dict(lower_bound=1)),
}


def _timed(fn, *args, **kwargs):
  start = time.perf_counter()
  result = fn(*args, **kwargs)
  return result, time.perf_counter() - start


def _rates(dataset, batch_size: int, num_batches: int):
  """Examples per second and per CPU-second of a Python loop pulling batches.

  The loop is how a training loop consumes the pipeline. CPU time (of all
  threads of this process) stays meaningful on a machine shared with other
  jobs, where wall-clock rates depend on their load.
  """
  iterator = iter(dataset)
  for _ in range(min(num_batches // 10, 200)):  # Warm up threads, autotune.
    next(iterator)
  wall, cpu = time.perf_counter(), time.process_time()
  for _ in range(num_batches):
    next(iterator)
  wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
  examples = num_batches * batch_size
  return examples / wall, examples / cpu


def _benchmark(name: str, values):
  with tempfile.TemporaryDirectory() as tmp:
    data_dir = values["data_dir"] or tmp
    fresh = (values["data_dir"] is None
             or not datasets.SPECS[name].builder(data_dir=data_dir).is_prepared())
    _, first = _timed(datasets.load, name, values["manual_dir"], data_dir)
    splits, cached = _timed(datasets.load, name, values["manual_dir"], data_dir)
  print(f"{name}: first load {first:.2f} s "
        f"({'built from raw files' if fresh else 'already prepared'}), "
        f"cached load {cached:.2f} s, {splits}")
  for batch_size in map(int, values["batch_size"]):
    dataset = datasets.train_batches(splits, batch_size, seed=0)
    per_second, per_cpu_second = _rates(dataset, batch_size, values["num_batches"])
    print(f"  batch_size={batch_size}: {per_second:,.0f} examples/s, "
          f"{per_cpu_second:,.0f} examples per CPU-second")


def check_flags(values):
  """Raises ValueError for unknown data sets or non-integer batch sizes."""
  unknown = sorted(set(values["dataset"]) - set(datasets.available()))
  if unknown:
    raise ValueError(f"--dataset: unknown {unknown}; available: "
                     f"{', '.join(datasets.available())}.")
  if not all(b.isdigit() and int(b) > 0 for b in values["batch_size"]):
    raise ValueError(f"--batch_size takes positive integers, got "
                     f"{values['batch_size']}.")


def main(values):
  for name in values["dataset"]:
    if values["benchmark"]:
      _benchmark(name, values)
    else:
      with cli.quiet_library_logs():
        splits = datasets.load(name, values["manual_dir"], values["data_dir"])
      print(f"{splits}, train mean grey level "
            f"{float(splits.train_mean.mean()):.4f}")


if __name__ == "__main__":
  cli.run_program(FLAG_SPECS, main, check_flags)
