"""The training loop of the experiment binaries (see :mod:`.loop`)."""

from experiments.training.distribute import STRATEGIES, make_strategy
from experiments.training.evaluation import EvalSet
from experiments.training.loop import TrainConfig, Trainer
from experiments.training.monitors import BiasCheck, GradientMoments
from experiments.training.outputs import (CHECKPOINT_DIR, CONFIG_FILE,
                                          CURVES_FILE, METRICS_FILE,
                                          SUMMARY_FILE, MetricsLog,
                                          plot_curves)
