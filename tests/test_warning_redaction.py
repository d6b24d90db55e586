"""Warnings go through the same redaction as errors: a secret never reaches the terminal."""
from conftest import write_task


def test_a_secret_in_a_warning_is_redacted(tmp_path, monkeypatch, capsys):
    from commands.cli import main

    secret = "sk-planted-0123456789abcdef"
    monkeypatch.setenv("PLANTED_API_KEY", secret)
    task = write_task(tmp_path / "t")
    (task.parent / "docs" / f"notes-{secret}.pdf").write_bytes(b"%PDF-1.4")  # a corpus file that is not indexed
    assert main(["validate", str(task)]) == 0
    err = capsys.readouterr().err
    assert "warning: corpus: 1 file is not .md, .txt or .jsonl" in err, err
    assert secret not in err and "notes-[redacted].pdf" in err, err
