"""advise: measure prompt-only, RAG and a pilot fine-tune on your own data, then decide."""

__version__ = "0.1.0"
