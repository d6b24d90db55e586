#!/usr/bin/env bash
# Start a local OpenAI-compatible server (transformers serve) of the bundled model on
# 127.0.0.1:$PORT, check it (advise validate --online), run advise against it, stop the server.
# Extra arguments go to `advise run` (e.g. --quiet).
set -euo pipefail
cd "$(dirname "$0")"
PORT=${PORT:-8011}
export HF_HUB_OFFLINE=1 LOCAL_API_KEY=${LOCAL_API_KEY:-local-server-needs-no-key}
mkdir -p models
ln -sfn "$(python -c 'from foundation.models import bundled_model_dir; print(bundled_model_dir())')" \
  models/smollm2-135m-instruct
transformers serve models/smollm2-135m-instruct --host 127.0.0.1 --port "$PORT" --device cpu >serve.log 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 120); do
  curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break
  kill -0 $SERVER 2>/dev/null || { echo "transformers serve stopped; see serve.log" >&2; exit 1; }
  sleep 1
done
advise validate task.yaml --online
advise run task.yaml --no-tune "$@"
