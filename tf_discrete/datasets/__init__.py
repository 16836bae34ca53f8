"""Binarized image datasets for discrete-latent VAEs, through tfds.

    from tf_discrete import datasets

    splits = datasets.load("dynamic_mnist")       # float32 [N, 784] grey levels
    train = datasets.train_batches(splits, batch_size=50, seed=0)
    test = datasets.eval_batches(splits.fixed_eval_set("test"), batch_size=500)

Datasets (``available()``):

* ``dynamic_mnist``, ``fashion_mnist``: train[:50000] / train[50000:] / test
  of the original 60k/10k sets, dynamically binarized.
* ``omniglot``: 28x28 Omniglot (IWAE ``chardata.mat`` layout); the last
  1,345 training images are the validation set; dynamically binarized.
* ``static_mnist``: Larochelle & Murray's fixed binarization, 50k/10k/10k.

Dynamic binarization draws Bernoulli(grey level) afresh for every training
batch; validation and test sets are binarized once with fixed seeds
(:meth:`Splits.fixed_eval_set`).

Offline use: put the raw files in a manual-directory root with one folder
per dataset and pass it as ``manual_dir=`` or ``$TF_DISCRETE_MANUAL_DIR``;
prepared data go to ``data_dir=`` / ``$TF_DISCRETE_DATA_DIR``. Processes
preparing the same dataset in the same data directory at once take turns
(a lock file there), so two runs started together both succeed.

Errors of the data rather than of the code are :class:`DatasetNotFoundError`
(a ``FileNotFoundError``) and :class:`CorruptDatasetError` (a
``ValueError``); their messages name the file and what to do.
"""

from tf_discrete.datasets._builders import DATA_DIR_ENV
from tf_discrete.datasets._builders import MANUAL_DIR_ENV
from tf_discrete.datasets._load import available
from tf_discrete.datasets._load import DatasetSpec
from tf_discrete.datasets._load import EVAL_BINARIZATION_SEEDS
from tf_discrete.datasets._load import load
from tf_discrete.datasets._load import SPECS
from tf_discrete.datasets._load import Splits
from tf_discrete.datasets._pipeline import binarize
from tf_discrete.datasets._pipeline import eval_batches
from tf_discrete.datasets._pipeline import train_batches
from tf_discrete.datasets._raw import CorruptDatasetError
from tf_discrete.datasets._raw import DatasetNotFoundError

__all__ = [
    "CorruptDatasetError",
    "DATA_DIR_ENV",
    "DatasetNotFoundError",
    "DatasetSpec",
    "EVAL_BINARIZATION_SEEDS",
    "MANUAL_DIR_ENV",
    "SPECS",
    "Splits",
    "available",
    "binarize",
    "eval_batches",
    "load",
    "train_batches",
]
