"""tf_discrete: gradient estimators for discrete latent variables.

Namespaces:
  bernoulli:   estimators for factorized Bernoulli latents.
  categorical: estimators for independent categorical latents.
  layers:      Keras 3 layers over both families.
  diagnostics: exact gradients by enumeration, Monte Carlo checks.
  datasets:    binarized image datasets through tensorflow-datasets.
"""

from tf_discrete import bernoulli
from tf_discrete import diagnostics
from tf_discrete import layers

try:  # Modules that land independently of the foundation.
  from tf_discrete import categorical
except ImportError:  # pragma: no cover
  pass
try:
  from tf_discrete import datasets
except ImportError:  # pragma: no cover
  pass

__version__ = "0.1.0"
