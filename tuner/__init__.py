"""The study: an Optuna search over the training kit's methods and objectives (``run_study``),
its storage, its summary and the export of the winner. One trial is ``training.trial``."""
