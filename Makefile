PYTHON ?= $(shell [ -x .venv/bin/python ] && echo .venv/bin/python || echo python)

.PHONY: bench
bench:  ## run every benchmark, write bench/results/*.json, print one table
	HF_HUB_OFFLINE=1 $(PYTHON) bench/run_all.py
