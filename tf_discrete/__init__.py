"""tf_discrete: gradient estimators for discrete latent variables.

Namespaces:
  bernoulli:   estimators for factorized Bernoulli latents.
  categorical: estimators for independent categorical latents.
  layers:      Keras 3 layers over both families.
  diagnostics: exact gradients by enumeration, Monte Carlo checks.
  datasets:    binarized image datasets through tensorflow-datasets.
"""

from tf_discrete import bernoulli
from tf_discrete import categorical
from tf_discrete import datasets
from tf_discrete import diagnostics
from tf_discrete import layers

__version__ = "0.1.0"
