"""task.yaml's ``compare:`` list: other models measured beside the task's own, never fine-tuned.

Each entry is either an OpenAI-compatible endpoint (``base_url`` set: a hosted API, vLLM, TGI,
Ollama, ``transformers serve``) or another local model run in-process (a hub id or a folder).
The API key is never in task.yaml: ``api_key_env`` names the environment variable holding it.

>>> CompareModel(name="mini", model="gpt-4.1-mini", base_url="https://api.openai.com/v1").kind
'endpoint'
>>> CompareModel(name="big", model="HuggingFaceTB/SmolLM2-360M-Instruct").kind
'local'
"""
from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class CompareModel(BaseModel):
    # strict: no lax conversions (a boolean for a number, "5" for 5), as every other section.
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$", max_length=80, description=(
        "Names its candidates: prompt-zero-shot@<name>, rag@<name>."))
    model: str = Field(min_length=1, description="The endpoint's model id, or a hub id or folder for a local model.")
    base_url: str | None = Field(None, description="An OpenAI-compatible API (…/v1); unset: a local model.")
    api_key_env: str | None = Field(None, description=(
        "The NAME of the environment variable holding the API key (never the key); unset: no key (a local server)."))
    price_per_million_input: float | None = Field(None, ge=0, le=100_000, description=(
        "USD per million prompt tokens as the API bills them; unset: the candidate is unpriced, not free."))
    price_per_million_output: float | None = Field(None, ge=0, le=100_000, description=(
        "USD per million completion tokens as the API bills them."))
    concurrency: int = Field(4, gt=0, le=256, description="Requests in flight at once while evaluating.")
    timeout: float = Field(60.0, gt=0, le=3600, description="Seconds one request may take.")
    max_retries: int = Field(3, ge=0, le=20, description=(
        "Retries of a request after a timeout, 429 or 5xx (backoff, honouring Retry-After)."))
    distill: Literal["off", "all", "missing"] = Field("off", description=(
        "all: this endpoint writes the answer of every training input and a pilot trained on its answers is "
        "measured beside the plain pilot (finetune-distilled@<name>); missing: it answers only the training "
        "inputs without an output (their answer field missing or empty), and the pilot trains on those answers "
        "and the other records' own outputs."))

    @model_validator(mode="before")
    @classmethod
    def _no_key_here(cls, data):
        if isinstance(data, dict) and any(k in data for k in ("api_key", "key", "token")):
            raise ValueError("never write an API key in task.yaml: put it in an environment variable and name "
                             "that variable in `api_key_env`")
        return data

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, v):
        # The message never repeats the value: it may be the key itself, pasted in the wrong place.
        if v is not None and not _ENV_NAME.match(v):
            raise ValueError("api_key_env must be the NAME of an environment variable (letters, digits, _), "
                             "not the key itself")
        return v

    @field_validator("base_url")
    @classmethod
    def _url(cls, v):
        if v is not None and not re.match(r"^https?://[^/\s]+", v):
            raise ValueError("base_url must be an http:// or https:// URL such as https://api.openai.com/v1")
        return v

    @model_validator(mode="after")
    def _endpoint_keys(self):
        if self.base_url is None:
            given = [k for k in ("api_key_env", "price_per_million_input", "price_per_million_output")
                     if getattr(self, k) is not None]
            if given:
                raise ValueError(f"{given[0]} is for an endpoint; add base_url, or leave it out for a local model")
        return self

    @property
    def kind(self) -> str:
        return "endpoint" if self.base_url else "local"

    @property
    def priced(self) -> bool:
        return self.price_per_million_input is not None and self.price_per_million_output is not None


def check_compare(task) -> None:
    """Cross-checks over the whole task: distinct names, one distillation teacher, a judge that is
    a compared model. Raises ValueError (taskfile turns it into one line naming the key)."""
    names = [m.name for m in task.compare]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise ValueError(f"compare.{i}.name: {name!r} is used twice; each compared model needs its own name")
    teachers = [i for i, m in enumerate(task.compare) if m.distill != "off"]
    if len(teachers) > 1:
        raise ValueError(f"compare.{teachers[1]}.distill: only one compared model can write the training answers")
    if teachers and task.compare[teachers[0]].kind != "endpoint":
        raise ValueError(f"compare.{teachers[0]}.distill: distillation reads from an endpoint (set base_url)")
    judge = getattr(task.metric, "judge", None)
    if judge is not None and judge not in names:
        raise ValueError(f"metric.judge: {judge!r} is not a name in compare: (add the judging model there)")
