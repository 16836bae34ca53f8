"""tf_discrete: gradient estimators for discrete latent variables.

Namespaces:
  bernoulli:   estimators for factorized Bernoulli latents.
  categorical: estimators for independent categorical latents.
  layers:      Keras 3 layers over both families.
  diagnostics: exact gradients by enumeration, Monte Carlo checks, the
               estimator tables.
  datasets:    binarized image datasets through tensorflow-datasets
               (imported on first use, so ``import tf_discrete`` does not
               load tensorflow-datasets).

Each estimator declares its facts (cost, target, bias, options, paper) as a
:class:`Facts`: ``tf_discrete.bernoulli.get("disarm").facts``.
"""

import importlib

from tf_discrete import bernoulli
from tf_discrete import categorical
from tf_discrete import diagnostics
from tf_discrete import layers
from tf_discrete.facts import Cost
from tf_discrete.facts import Estimates
from tf_discrete.facts import Facts
from tf_discrete.facts import Option

__version__ = "0.1.0"

__all__ = ["Cost", "Estimates", "Facts", "Option", "bernoulli", "categorical",
           "datasets", "diagnostics", "layers"]

_LAZY_MODULES = ("datasets",)


def __getattr__(name):
  """Imports ``tf_discrete.datasets`` on first access."""
  if name in _LAZY_MODULES:
    return importlib.import_module(f"tf_discrete.{name}")
  raise AttributeError(f"module 'tf_discrete' has no attribute {name!r}")


def __dir__():
  return sorted(set(globals()) | set(_LAZY_MODULES))
