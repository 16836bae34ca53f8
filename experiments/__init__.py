"""The experiment binaries and the application code behind them.

Runs from a checkout (``python -m experiments.<command>``); not installed.
"""

import os as _os
import sys as _sys

# A command's terminal shows its progress, not TensorFlow's native start-up
# chatter (see _quiet); TF_DISCRETE_VERBOSE=1 keeps everything.
if _sys.argv[:1] == ["-m"] and _os.environ.get("TF_DISCRETE_VERBOSE") != "1":
  from experiments import _quiet  # pylint: disable=g-import-not-at-top
  _quiet.filter_native_stderr()
