"""Fixtures shared by the test modules (plain helpers are in support.py)."""

import pytest

from experiments import vae_common
from tests import support


@pytest.fixture(scope="session")
def repo_root():
  """The checkout the tests run from."""
  return support.ROOT


@pytest.fixture(scope="module")
def synthetic_splits():
  """Grey-level images near a few prototypes (the one synthetic-data
  generator of the suite): 400 training images of 64 pixels, 40 per
  evaluation set."""
  return vae_common.synthetic_splits(seed=3, num_train=400, num_eval=40,
                                     num_prototypes=4, data_dim=64)
