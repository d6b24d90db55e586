"""Every numeric option of every ``advise`` command has a range and must be finite, like a task
key: found from the CLI itself (a new option without a check fails here), each given a value
below its range, above it and NaN, through ``commands.cli.main``: one line naming the flag, exit 2."""
from __future__ import annotations

import inspect
import typing

import pytest
from typer.models import ArgumentInfo, OptionInfo

from commands.cli import app, main

REQUIRED = {"submit": ["--server", "http://127.0.0.1:9"], "export": ["--out", "out"]}


def _commands() -> dict[str, typing.Callable]:
    return {c.name or c.callback.__name__: c.callback for c in app.registered_commands}


def _numeric_options() -> list[tuple[str, str, bool]]:
    """(command, flag, is_float) for each int or float option, from the commands' own signatures."""
    out = []
    for name, fn in sorted(_commands().items()):
        hints = typing.get_type_hints(fn)
        for pname, param in inspect.signature(fn).parameters.items():
            kinds = set(typing.get_args(hints[pname]) or (hints[pname],)) - {type(None)}
            if isinstance(param.default, OptionInfo) and kinds & {int, float} and bool not in kinds:
                out.append((name, param.default.param_decls[0], float in kinds))
    return out


def _argv(command: str, flag: str, value: str) -> list[str]:
    params = inspect.signature(_commands()[command]).parameters.values()
    arguments = ["task.yaml" for p in params if isinstance(p.default, ArgumentInfo)]
    return [command, *arguments, *REQUIRED.get(command, []), flag, value]


def test_the_cli_has_numeric_options_to_check():
    found = {(c, f) for c, f, _ in _numeric_options()}
    assert {("serve", "--port"), ("serve", "--heartbeat"), ("tune", "--n-trials"), ("run", "--seeds")} <= found


@pytest.mark.parametrize("command,flag,is_float", _numeric_options(), ids=lambda v: str(v))
def test_every_numeric_option_refuses_out_of_range_and_non_finite_values(command, flag, is_float, tmp_path,
                                                                          monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    values = ["-1", "1000000000"] + (["nan", "inf"] if is_float else [])
    for value in values:
        code = main(_argv(command, flag, value))
        err = capsys.readouterr().err
        lines = err.splitlines()
        assert code == 2 and len(lines) == 1, (value, code, err)
        assert lines[0].startswith(f"error: {flag}: must be a number from "), (value, err)
        assert "Traceback" not in err
    assert not (tmp_path / "data").exists() and list(tmp_path.iterdir()) == [], "nothing is started or written"
