"""The training kit: PEFT methods, objectives, the search space, one trial, the pilot's learning curve.

The objectives beyond SFT register themselves in ``training.objectives.OBJECTIVES`` when their
modules are imported here, so they are known wherever the kit is imported.
"""
from training import preference, pretrain, rl  # noqa: F401  (each module registers its objectives)
