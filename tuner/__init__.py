"""The tuner: the training kit (methods, objectives, training, trials) and the study.

The objectives beyond SFT register themselves in ``tuner.objectives.OBJECTIVES`` when their
modules are imported here, so they are known wherever the tuner is imported.
"""
from tuner import preference, pretrain, rl  # noqa: F401  (each module registers its objectives)
