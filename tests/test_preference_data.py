"""Preference data: every paired and unpaired format (and its variants) detected and converted,
the data kind of a file and of the splits, and each mistake as a one-line error naming the line."""
from __future__ import annotations

import json

import pytest

from advisor.tasks import check_task, load_task
from conftest import write_jsonl, write_task
from foundation.data import Splits, load_records, load_splits
from foundation.errors import AdviseError
from foundation.records import Record, data_kind, detect_format


def _msg(role, content):
    return {"role": role, "content": content}


CONVERSATION = [_msg("system", "Be kind."), _msg("user", "Hi"), _msg("assistant", "Hello!"), _msg("user", "Sky?")]
WANT_CONVERSATION = ("Be kind.", [_msg("user", "Hi"), _msg("assistant", "Hello!")], "Sky?")

# name -> (row, detected format, (system, history, input), output, rejected, label)
ROWS = {
    "trl standard": ({"prompt": "Sky?", "chosen": "Blue.", "rejected": "Green."},
                     "preference", (None, [], "Sky?"), "Blue.", "Green.", None),
    "trl conversational": ({"prompt": CONVERSATION, "chosen": [_msg("assistant", "Blue.")],
                            "rejected": [_msg("assistant", "Green.")]},
                           "preference", WANT_CONVERSATION, "Blue.", "Green.", None),
    "trl conversational prompt, text answers": ({"prompt": [_msg("user", "Sky?")], "chosen": "Blue.", "rejected": "Green."},
                                                "preference", (None, [], "Sky?"), "Blue.", "Green.", None),
    "sharegpt": ({"conversations": [{"from": "system", "value": "Be kind."}, {"from": "human", "value": "Hi"},
                                    {"from": "gpt", "value": "Hello!"}, {"from": "human", "value": "Sky?"}],
                  "chosen": {"from": "gpt", "value": "Blue."}, "rejected": {"from": "gpt", "value": "Green."}},
                 "sharegpt_preference", WANT_CONVERSATION, "Blue.", "Green.", None),
    "openai": ({"input": {"messages": CONVERSATION, "tools": [], "parallel_tool_calls": True},
                "preferred_output": [_msg("assistant", "Blue.")], "non_preferred_output": [_msg("assistant", "Green.")]},
               "openai_preference", WANT_CONVERSATION, "Blue.", "Green.", None),
    "kto standard": ({"prompt": "Sky?", "completion": "Blue.", "label": True},
                     "unpaired", (None, [], "Sky?"), "Blue.", None, True),
    "kto conversational": ({"prompt": CONVERSATION, "completion": [_msg("assistant", "Green.")], "label": False},
                           "unpaired", WANT_CONVERSATION, "Green.", None, False),
    "kto messages": ({"messages": CONVERSATION + [_msg("assistant", "Blue.")], "label": True},
                     "unpaired", WANT_CONVERSATION, "Blue.", None, True),
}


@pytest.mark.parametrize("name", sorted(ROWS))
def test_every_preference_format_is_detected_and_converted(tmp_path, name):
    row, fmt, (system, history, text), output, rejected, label = ROWS[name]
    records, detected = load_records(write_jsonl(tmp_path / "d.jsonl", [row] * 3))
    assert detected == fmt and len(records) == 3
    r = records[0]
    assert (r.system, r.history, r.input, r.output, r.rejected, r.label) == (system, history, text, output, rejected, label)
    assert r.origin == (str(tmp_path / "d.jsonl"), 1)
    assert data_kind(fmt) == data_kind(records) == ("unpaired" if label is not None else "preference")


def test_a_json_list_and_an_explicit_format(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps([ROWS["openai"][0]] * 2), encoding="utf-8")
    records, fmt = load_records(path, fmt="openai_preference")
    assert fmt == "openai_preference" and records[1].rejected == "Green."
    path.write_text(json.dumps([{"prompt": "p", "rejected": "r"}]), encoding="utf-8")
    with pytest.raises(AdviseError, match=r"d.json: item 1: preference record: missing field 'chosen'"):
        load_records(path, fmt="preference", shown="d.json")


def test_csv_labels_are_text_true_or_false_in_any_case(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("prompt,completion,label\nSky?,Blue.,TRUE\nSea?,Red.,false\nSun?,Hot., True \n", encoding="utf-8")
    records, fmt = load_records(path)
    assert fmt == "unpaired" and [r.label for r in records] == [True, False, True]
    path.write_text("prompt,completion,label\nSky?,Blue.,true\nSea?,Red.,yes\n", encoding="utf-8")
    with pytest.raises(AdviseError, match=r"d.csv: line 3: unpaired record: 'label' must be true or false.*\"yes\""):
        load_records(path)
    path.write_text("prompt,chosen,rejected\nSky?,Blue.,Green.\n", encoding="utf-8")
    assert load_records(path)[0][0].rejected == "Green."


def test_detection_prefers_preference_formats_where_keys_overlap():
    assert detect_format({"prompt": "p", "completion": "c", "label": True}) == "unpaired"
    assert detect_format({"prompt": "p", "completion": "c"}) == "prompt_completion"
    assert detect_format({"messages": [], "label": False}) == "unpaired"
    assert detect_format({"messages": []}) == "messages"
    assert detect_format({"conversations": [], "chosen": {}}) == "sharegpt_preference"
    assert detect_format({"conversations": []}) == "sharegpt"
    assert detect_format({"prompt": "p", "rejected": "r"}) == "preference"  # then: missing field 'chosen'
    assert detect_format({"input": {}, "preferred_output": []}) == "openai_preference"
    assert detect_format({"chosen": "c", "rejected": "r"}) == "preference"  # TRL's implicit prompt (HH-RLHF)


def test_data_kind_of_formats_and_records():
    assert [data_kind(f) for f in ("alpaca", "columns", "preference", "openai_preference", "unpaired")] == \
        ["sft", "sft", "preference", "preference", "unpaired"]
    assert data_kind([Record("q", "a"), Record("q2", "a2")]) == "sft"
    assert data_kind([Record("q", "a", rejected="b")]) == "preference"
    assert data_kind([]) == "sft"
    with pytest.raises(ValueError, match="mix kinds"):
        data_kind([Record("q", "a", rejected="b"), Record("q", "a", label=True)])
    with pytest.raises(ValueError):
        data_kind("auto")


def _pairs(n, start=0):
    return [{"prompt": f"Question {i}?", "chosen": f"Good answer {i}.", "rejected": f"Bad answer {i}."}
            for i in range(start, start + n)]


def _labels(n, start=0):
    return [{"prompt": f"Question {i}?", "completion": f"Answer {i}.", "label": i % 2 == 0} for i in range(start, start + n)]


def _with_data(path, data: str):
    """The task file with another ``data:`` line (write_task's names train and eval)."""
    path.write_text(path.read_text().replace("data: {train: data/train.jsonl, eval: data/eval.jsonl}", data))
    return path


def test_splits_carry_the_kind(tmp_path):
    assert load_splits(load_task(write_task(tmp_path / "sft", corpus=False))).kind == "sft"
    path = write_task(tmp_path / "pairs", corpus=False, train=_pairs(20), eval_rows=_pairs(6, 100))
    task = load_task(_with_data(path, "data: {train: data/train.jsonl, eval: data/eval.jsonl, max_train: 12}"))
    splits = load_splits(task)
    assert splits.kind == splits.stats["kind"] == "preference"
    assert len(splits.train) + len(splits.validation) == 12
    assert all(r.rejected for r in splits.train + splits.validation + splits.eval)
    splits = load_splits(load_task(write_task(tmp_path / "kto", corpus=False, train=_labels(20), eval_rows=_labels(6, 100))))
    assert splits.kind == "unpaired" and {r.label for r in splits.eval} == {True, False}
    assert Splits(train=[], validation=[], eval=[], stats={}).kind == "sft"


def test_one_file_of_pairs_is_split_and_validate_names_the_kind(tmp_path):
    folder = tmp_path / "one"
    path = _with_data(write_task(folder, train=_pairs(30)), "data: {file: data/train.jsonl, eval_fraction: 0.25}")
    checked = check_task(path, training=False)
    assert checked.splits.kind == "preference" and checked.splits.stats["formats"] == {"file": "preference"}
    assert "data kind preference" in checked.summary()


def test_train_and_eval_of_different_kinds_name_the_eval_file(tmp_path):
    path = write_task(tmp_path / "t", corpus=False, train=_pairs(20))
    with pytest.raises(AdviseError) as err:
        load_splits(load_task(path))
    assert err.value.file.endswith("data/eval.jsonl") and err.value.where is None
    assert err.value.message.startswith("this file holds sft records")
    assert "paired preference records" in str(err.value) and "same kind" in str(err.value)


BAD = {
    "chosen equals rejected": ({"prompt": "p", "chosen": " Same. ", "rejected": "Same."}, "are the same answer"),
    "empty chosen": ({"prompt": "p", "chosen": "  ", "rejected": "r"}, "'chosen' is empty"),
    "empty rejected": ({"prompt": "p", "chosen": "c", "rejected": None}, "'rejected' is empty"),
    "empty chosen message": ({"prompt": "p", "chosen": [_msg("assistant", "")], "rejected": "r"}, "'chosen' is empty"),
    "chosen is a user turn": ({"prompt": "p", "chosen": [_msg("user", "c")], "rejected": "r"}, "an assistant turn"),
    "two chosen messages": ({"prompt": "p", "chosen": [_msg("assistant", "c")] * 2, "rejected": "r"}, "got 2 items"),
    "prompt ends with the assistant": ({"prompt": [_msg("user", "p"), _msg("assistant", "a")], "chosen": "c",
                                        "rejected": "r"}, "must end with a user turn"),
    "sharegpt empty rejected": ({"conversations": [{"from": "human", "value": "p"}], "chosen": {"from": "gpt", "value": "c"},
                                 "rejected": {"from": "gpt", "value": ""}}, "'rejected' is empty"),
    "label is a number": ({"prompt": "p", "completion": "c", "label": 1}, "'label' must be true or false"),
    "label is quoted": ({"prompt": "p", "completion": "c", "label": "false"}, "without quotes"),
    "label is null": ({"messages": [_msg("user", "p"), _msg("assistant", "c")], "label": None}, "got nothing"),
    "openai output is text": ({"input": {"messages": [_msg("user", "p")]}, "preferred_output": "c",
                               "non_preferred_output": [_msg("assistant", "r")]}, "'preferred_output' must be a list"),
    "openai output lacks content": ({"input": {"messages": [_msg("user", "p")]}, "preferred_output": [{"role": "assistant"}],
                                     "non_preferred_output": [_msg("assistant", "r")]}, "needs 'role' and 'content'"),
    "openai input is text": ({"input": "p", "preferred_output": [_msg("assistant", "c")],
                              "non_preferred_output": [_msg("assistant", "r")]}, "'input' must be an object"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_preference_records_name_the_line(tmp_path, name):
    row, message = BAD[name]
    good = next(r for r, fmt, *_ in ROWS.values() if fmt == detect_format(row))  # two good lines of its format first
    path = write_jsonl(tmp_path / "train.jsonl", [good, good, row])
    with pytest.raises(AdviseError) as err:
        load_records(path, shown="data/train.jsonl")
    assert str(err.value).startswith("data/train.jsonl: line 3: ")
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("first, then, this", [("trl standard", "kto standard", "unpaired"),
                                               ("kto messages", "sharegpt", "paired")])
def test_a_file_mixing_paired_and_unpaired_records_says_so(tmp_path, first, then, this):
    path = write_jsonl(tmp_path / "d.jsonl", [ROWS[first][0], ROWS[then][0]])
    with pytest.raises(AdviseError) as err:
        load_records(path)
    message = str(err.value)
    assert "line 2" in message and "mixed formats" not in message
    assert "mixes paired preference records (prompt/chosen/rejected) and unpaired ones (label)" in message
    assert f"this record is {this}" in message


def test_preference_next_to_sft_records_is_the_usual_mixed_formats_error(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [ROWS["trl standard"][0], {"prompt": "p", "completion": "c"}])
    with pytest.raises(AdviseError, match="line 2: mixed formats in one file: this record is prompt_completion"):
        load_records(path)


def test_implicit_prompt_pairs_of_hh_rlhf_and_ultrafeedback_binarized(tmp_path):
    """Anthropic HH: chosen and rejected are whole transcripts; UltraFeedback binarized: message lists
    that repeat the prompt. The shared turns are the prompt, the last turn of each the answer."""
    hh = {"chosen": "\n\nHuman: Hi there\n\nAssistant: Hello!\n\nHuman: Name a colour.\n\nAssistant: Blue.",
          "rejected": "\n\nHuman: Hi there\n\nAssistant: Hello!\n\nHuman: Name a colour.\n\nAssistant: No."}
    records, fmt = load_records(write_jsonl(tmp_path / "hh.jsonl", [hh] * 2))
    r = records[0]
    assert fmt == "preference" and (r.input, r.output, r.rejected) == ("Name a colour.", "Blue.", "No.")
    assert r.history == [{"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Hello!"}]
    uf = {"prompt": "Name a colour.",
          "chosen": [{"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "Blue."}],
          "rejected": [{"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "No."}]}
    records, fmt = load_records(write_jsonl(tmp_path / "uf.jsonl", [uf]))
    assert fmt == "preference" and (records[0].input, records[0].output, records[0].rejected) == (
        "Name a colour.", "Blue.", "No.") and records[0].history == []
    diverged = {**uf, "rejected": [{"role": "user", "content": "Name a shape."}, {"role": "assistant", "content": "No."}]}
    with pytest.raises(AdviseError) as err:
        load_records(write_jsonl(tmp_path / "bad.jsonl", [diverged]), shown="bad.jsonl")
    assert "share every turn but the last" in err.value.one_line() and err.value.where == 1
    with pytest.raises(AdviseError) as err:
        load_records(write_jsonl(tmp_path / "plain.jsonl", [{"chosen": "Blue.", "rejected": "No."}]), shown="plain.jsonl")
    assert "not a Human:/Assistant: transcript" in err.value.one_line()
