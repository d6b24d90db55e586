"""The baselines: one module each, registered in ``baselines.base.BASELINES`` when imported here."""
from baselines import finetune, prompt, rag  # noqa: F401  (each module registers itself)
