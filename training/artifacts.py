"""Trained trials on disk: the adapter in standard PEFT format (or the whole model for BitFit and
full fine-tuning) plus ``advise_trial.json``, a typed :class:`TrialRecord` saying how to load it."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from foundation.errors import AdviseError

RECORD_FILE = "advise_trial.json"


class TrialRecord(BaseModel):
    """What a saved trial needs to be loaded, evaluated and exported without the study."""

    model_config = ConfigDict(extra="ignore")  # newer writers may add fields

    trial: int | None = None  # None for the pilot
    study: str
    method: str
    objective: str = "sft"
    params: dict
    full_model: bool
    mergeable: bool
    model: str  # the task's `model:` value
    base_dir: str  # the task folder, which a relative `model:` path is relative to
    seed: int
    trust_remote_code: bool = False
    system: str = ""
    template: str = "{input}"

    @classmethod
    def read(cls, folder: Path) -> "TrialRecord":
        path = Path(folder) / RECORD_FILE
        try:
            return cls.model_validate_json(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise AdviseError("no saved trial here (advise_trial.json is missing)", file=folder) from None
        except (OSError, ValueError) as e:
            raise AdviseError(f"cannot read the saved trial: {str(e).splitlines()[0]}", file=path) from None


def prepare_adapter(method, params: dict, facts):
    """(what train_sft's ``adapter`` takes, the initial-adapter folder or None) for a method."""
    adapter = method.build(params, facts)
    if method.save is not None:  # e.g. PiSSA: keep the initial adapter to convert at save time
        return _keep_initial(adapter)
    return adapter, None


def _keep_initial(adapter):
    """Wrap a PEFT config so the initial adapter is saved (PiSSA converts against it later)."""
    from peft import get_peft_model

    init_dir = Path(tempfile.mkdtemp(prefix="advise-init-"))

    def prepare(model):
        peft_model = get_peft_model(model, adapter)
        peft_model.peft_config["default"].init_lora_weights = True  # reload the init as plain LoRA
        peft_model.save_pretrained(init_dir)
        peft_model.peft_config["default"].init_lora_weights = adapter.init_lora_weights
        return peft_model

    return prepare, init_dir


def save_trained(method, model, out: Path, init_dir=None) -> None:
    """A trained model in standard PEFT format (or whole, for BitFit and full fine-tuning)."""
    if method.save is not None and init_dir is not None:
        method.save(model, out, init_dir)
        shutil.rmtree(init_dir, ignore_errors=True)
    else:
        model.save_pretrained(out)


def save_trial(out: Path, method, model, init_dir, record: TrialRecord, tokenizer) -> None:
    """Save a trained trial to ``out`` atomically: a crash never leaves half an adapter there."""
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        save_trained(method, model, tmp, init_dir)
        if method.full_model:
            tokenizer.save_pretrained(tmp)
        (tmp / RECORD_FILE).write_text(record.model_dump_json(indent=2), encoding="utf-8")
        replace_dir(tmp, out)
    except OSError as e:  # the user's path in the message, never the temporary folder's
        shutil.rmtree(tmp, ignore_errors=True)
        raise OSError(e.errno, e.strerror, str(out)) from None


def replace_dir(src: Path, dst: Path) -> None:
    if dst.exists():
        old = dst.parent / f".{dst.name}.old-{os.getpid()}"
        os.replace(dst, old)
        shutil.rmtree(old, ignore_errors=True)
    os.replace(src, dst)


def load_trained(folder: Path, device: str | None = None, tokenizer=None):
    """(model, tokenizer) for a saved trial: base + PEFT adapter, or the saved full model."""
    from foundation.models import load_model, load_tokenizer, pick_device, resolve_model

    record = TrialRecord.read(folder)
    source = resolve_model(record.model, Path(record.base_dir))
    device = device or pick_device("auto")
    tokenizer = tokenizer or load_tokenizer(source, record.trust_remote_code)
    if record.full_model:
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=record.trust_remote_code)
        model.to(device).eval()
        return model, tokenizer
    from peft import PeftModel

    base = load_model(source, device=device, trust_remote_code=record.trust_remote_code, seed=record.seed)
    model = PeftModel.from_pretrained(base, folder)
    model.eval()
    return model, tokenizer
