"""The estimator-comparison study: what is run (:mod:`settings`), how
(:mod:`launch`), what a run leaves behind (:mod:`records`) and what is
reported (:mod:`report`). The command is ``python -m experiments.study``
(docs/study.md)."""
