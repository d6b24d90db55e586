"""The baselines: one module each, registered in ``baselines.base.BASELINES`` when imported here
(in order: a baseline that needs another is registered after it)."""
from baselines import prompt, rag, finetune, finetune_rag, compare, distill  # noqa: F401,I001  (each module registers itself)
