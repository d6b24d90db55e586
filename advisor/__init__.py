"""advise: measure prompt-only, RAG and a pilot fine-tune on your own data, then decide."""

from foundation import __version__

__all__ = ["__version__"]
