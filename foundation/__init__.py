"""The ground floor of advise: task config, data, metrics, models, generation, measurements and
the results schema. Nothing here imports a stage (baselines, the verdict, the tuner, the
reports) or the orchestration (pipeline, CLI, service); see ARCHITECTURE.md."""

__version__ = "0.2.0"
