"""The `advise` command line: the one roof over the pipeline (advisor) and the service."""
