"""Prepares datasets, or measures load times and pipeline throughput.

    python -m tf_discrete.datasets --dataset dynamic_mnist omniglot
    python -m tf_discrete.datasets --benchmark --dataset dynamic_mnist \
        --batch_size 50 200

Without ``--benchmark`` each dataset is prepared (once) in the data
directory and summarized. With it, each dataset is first built in a fresh
temporary data directory (unless ``--data_dir`` is given) and loaded again
from that cache in the same process; then a Python loop pulls
``--num_batches`` batches of ``train_batches``.
"""

import argparse
import tempfile
import time

from tf_discrete import datasets


def _parse_args(argv=None):
  parser = argparse.ArgumentParser(
      prog="python -m tf_discrete.datasets", description=__doc__,
      formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--dataset", nargs="+", default=["dynamic_mnist"],
                      choices=datasets.available())
  parser.add_argument("--manual_dir", default=None,
                      help=f"raw-file root (default ${datasets.MANUAL_DIR_ENV})")
  parser.add_argument("--data_dir", default=None,
                      help=f"tfds data directory (default "
                           f"${datasets.DATA_DIR_ENV}; with --benchmark a "
                           f"fresh temporary directory)")
  parser.add_argument("--benchmark", action="store_true")
  parser.add_argument("--batch_size", nargs="+", type=int, default=[50, 200])
  parser.add_argument("--num_batches", type=int, default=5000)
  return parser.parse_args(argv)


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


def _benchmark(name: str, args):
  with tempfile.TemporaryDirectory() as tmp:
    data_dir = args.data_dir or tmp
    fresh = (args.data_dir is None
             or not datasets.SPECS[name].builder(data_dir=data_dir).is_prepared())
    _, first = _timed(datasets.load, name, args.manual_dir, data_dir)
    splits, cached = _timed(datasets.load, name, args.manual_dir, data_dir)
  print(f"{name}: first load {first:.2f} s "
        f"({'built from raw files' if fresh else 'already prepared'}), "
        f"cached load {cached:.2f} s, {splits}")
  for batch_size in args.batch_size:
    dataset = datasets.train_batches(splits, batch_size, seed=0)
    per_second, per_cpu_second = _rates(dataset, batch_size, args.num_batches)
    print(f"  batch_size={batch_size}: {per_second:,.0f} examples/s, "
          f"{per_cpu_second:,.0f} examples per CPU-second")


def main(argv=None):
  args = _parse_args(argv)
  for name in args.dataset:
    if args.benchmark:
      _benchmark(name, args)
    else:
      splits = datasets.load(name, args.manual_dir, args.data_dir)
      print(f"{splits}, train mean grey level "
            f"{float(splits.train_mean.mean()):.4f}")


if __name__ == "__main__":
  main()
