"""The machine a run or a benchmark ran on, for reports and tables."""

import importlib.metadata
import os
import platform
import shutil
import socket
import subprocess
from typing import Any, Dict, Mapping


def machine_info() -> Dict[str, Any]:
  """CPU model, cores, GPUs, TensorFlow version (no TensorFlow import)."""
  cpu = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.lower().startswith("model name"):
          cpu = line.split(":", 1)[1].strip()
          break
  except OSError:
    pass
  try:
    usable = len(os.sched_getaffinity(0))
  except AttributeError:  # pragma: no cover
    usable = os.cpu_count()
  gpus = []
  if shutil.which("nvidia-smi"):
    try:
      out = subprocess.run(
          ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
          capture_output=True, text=True, timeout=30, check=True)
      gpus = [l.strip() for l in out.stdout.splitlines() if l.strip()]
    except (subprocess.SubprocessError, OSError):
      pass
  tf_version = None
  for dist in ("tensorflow", "tensorflow-cpu", "tf-nightly"):
    try:
      tf_version = importlib.metadata.version(dist)
      break
    except importlib.metadata.PackageNotFoundError:
      continue
  return {"host": socket.gethostname(), "cpu_model": cpu,
          "cpu_cores": os.cpu_count(), "usable_cores": usable, "gpus": gpus,
          "tensorflow": tf_version, "python": platform.python_version(),
          "platform": platform.platform()}


def machine_label(machine: Mapping[str, Any]) -> str:
  gpus = ", ".join(machine.get("gpus") or []) or "no GPU"
  cores = machine.get("usable_cores") or machine.get("cpu_cores")
  return (f"{machine.get('cpu_model', '?')}, {cores} cores, {gpus}, "
          f"TensorFlow {machine.get('tensorflow') or '?'}")
