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

``tf_discrete.estimate(objective, distribution, estimator=...)`` runs an
estimator on a tensorflow-probability ``tfd.Bernoulli``, ``tfd.Categorical``
or ``tfd.OneHotCategorical`` (see :mod:`tf_discrete.distributions`;
tensorflow-probability is imported on first use).

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
           "datasets", "diagnostics", "estimate", "layers"]

_LAZY_MODULES = ("datasets", "distributions")


def estimate(objective, distribution, estimator="disarm", num_samples=None,
             seed=None, **options):
  """Runs ``estimator`` on a tensorflow-probability distribution; see
  :func:`tf_discrete.distributions.estimate`."""
  from tf_discrete import distributions  # pylint: disable=g-import-not-at-top
  return distributions.estimate(objective, distribution, estimator,
                                num_samples=num_samples, seed=seed, **options)


def __getattr__(name):
  """Imports ``tf_discrete.datasets`` (or ``.distributions``) on first
  access."""
  if name in _LAZY_MODULES:
    return importlib.import_module(f"tf_discrete.{name}")
  raise AttributeError(f"module 'tf_discrete' has no attribute {name!r}")


def __dir__():
  return sorted(set(globals()) | set(_LAZY_MODULES))
