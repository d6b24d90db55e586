
import pytest

from advisor.tasks import load_task
from foundation.data import load_records, load_splits
from foundation.records import Record, detect_format
from foundation.errors import AdviseError
from conftest import write_jsonl, write_task

ROWS = {
    "alpaca": {"instruction": "Translate", "input": "chat", "output": "cat"},
    "sharegpt": {"conversations": [{"from": "system", "value": "be brief"}, {"from": "human", "value": "hi"},
                                    {"from": "gpt", "value": "hello"}]},
    "messages": {"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]},
    "prompt_completion": {"prompt": "Capital of France?", "completion": "Paris"},
    "question_answer": {"question": "Capital of Italy?", "answer": "Rome"},
}


@pytest.mark.parametrize("fmt", sorted(ROWS))
def test_every_format_is_detected_and_converted(tmp_path, fmt):
    path = write_jsonl(tmp_path / "d.jsonl", [ROWS[fmt]] * 3)
    records, detected = load_records(path)
    assert detected == fmt and len(records) == 3
    r = records[0]
    assert r.input and r.output
    if fmt == "alpaca":
        assert r.input == "Translate\n\nchat" and r.output == "cat"
    if fmt == "sharegpt":
        assert (r.system, r.input, r.output) == ("be brief", "hi", "hello")


def test_column_mapping_csv_and_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from foundation.config import ColumnMapping

    csv = tmp_path / "d.csv"
    csv.write_text("text,label\nrefund please,billing\nserver down,ops\n")
    records, fmt = load_records(csv, columns=ColumnMapping(input="text", output="label"))
    assert fmt == "columns" and [r.output for r in records] == ["billing", "ops"]
    pq.write_table(pa.table({"question": ["a?", "b?"], "answer": ["A", "B"]}), tmp_path / "d.parquet")
    records, fmt = load_records(tmp_path / "d.parquet")
    assert fmt == "question_answer" and records[1].output == "B"


def test_json_lines_named_json_and_tab_separated_files_are_read(tmp_path):
    """`Dataset.to_json("train.json")` writes JSON Lines; a .tsv is a CSV with tabs."""
    lines = tmp_path / "train.json"
    lines.write_text('{"question": "a?", "answer": "A"}\n{"question": "b?", "answer": "B"}\n')
    records, fmt = load_records(lines)
    assert fmt == "question_answer" and [r.output for r in records] == ["A", "B"]
    lines.write_text('{"question": "a?", "answer": "A"}\n{"question": "b?", "answer": \n')
    with pytest.raises(AdviseError) as err:
        load_records(lines, shown="train.json")
    assert err.value.one_line().startswith("train.json: line 2: invalid JSON")
    tsv = tmp_path / "d.tsv"
    tsv.write_text("question\tanswer\nwhere, exactly?\tthere, I think\n")
    records, fmt = load_records(tsv)
    assert (records[0].input, records[0].output) == ("where, exactly?", "there, I think")


def test_mixed_formats_are_rejected_with_the_line(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [ROWS["alpaca"], ROWS["alpaca"], ROWS["question_answer"]])
    with pytest.raises(AdviseError) as err:
        load_records(path)
    assert "line 3" in str(err.value) and "mixed formats" in str(err.value)


def test_single_file_split_is_seeded_and_leakage_is_reported(tmp_path):
    rows = [{"question": f"q{i}", "answer": f"a{i}"} for i in range(40)]
    write_jsonl(tmp_path / "all.jsonl", rows)
    (tmp_path / "task.yaml").write_text("name: s\ndata: {file: all.jsonl, eval_fraction: 0.25}\n")
    a = load_splits(load_task(tmp_path / "task.yaml"))
    b = load_splits(load_task(tmp_path / "task.yaml"))
    assert [r.input for r in a.eval] == [r.input for r in b.eval]
    assert len(a.eval) == 10 and len(a.train) + len(a.validation) == 30
    assert not {r.key() for r in a.train} & {r.key() for r in a.eval}
    assert a.stats["leakage"]["train_eval_duplicates"] == 0

    path = write_task(tmp_path / "leaky", train=[{"question": "same?", "answer": "yes"}] * 3 +
                      [{"question": f"t{i}", "answer": "x"} for i in range(10)],
                      eval_rows=[{"question": "same?", "answer": "yes"}] + [{"question": f"e{i}", "answer": "y"} for i in range(6)])
    stats = load_splits(load_task(path)).stats
    assert stats["leakage"]["train_eval_duplicates"] == 1  # eval records seen in train, not train copies of them


def test_conversations_that_differ_before_the_last_turn_are_not_leakage(tmp_path):
    def chat(first):
        return {"messages": [{"role": "user", "content": first}, {"role": "assistant", "content": "ok"},
                             {"role": "user", "content": "and now?"}, {"role": "assistant", "content": "done"}]}

    path = write_task(tmp_path / "t", train=[chat(f"step {i}") for i in range(8)],
                      eval_rows=[chat(f"other step {i}") for i in range(5)] + [chat("step 0")])
    assert load_splits(load_task(path)).stats["leakage"]["train_eval_duplicates"] == 1


def test_squad_and_triviaqa_answer_lists_are_a_reference_with_alternatives(tmp_path):
    """SQuAD's {text: [...], answer_start: [...]} and a plain list of texts: the first text is the
    reference (and what a fine-tune learns), the rest are accepted too; never their JSON text."""
    squad = [{"question": f"Where is site {i}?", "answers": {"text": [f"Town {i}", f"the town of Town {i}"],
                                                              "answer_start": [3, 0]}} for i in range(12)]
    path = write_task(tmp_path / "t", train=squad[:6], eval_rows=squad[6:])
    text = path.read_text().replace("metric: {name: contains}", "metric: {name: exact_match}")
    path.write_text(text.replace("data: {", "data: {columns: {input: question, output: answers}, "))
    splits = load_splits(load_task(path))
    first = splits.eval[0]
    assert first.output == "Town 6" and first.alternatives == ["the town of Town 6"]
    from foundation.metrics import score_records

    task = load_task(path)
    assert score_records(task, ["town 6", "the town of town 7", '{"text": ["Town 8"]}'], splits.eval[:3]) == [1.0, 1.0, 0.0]
    path.write_text(path.read_text().replace("output: answers}", "output: answers.text}"))
    assert load_splits(load_task(path)).eval[0].alternatives == ["the town of Town 6"]
    trivia = [{"question": f"q{i}", "answer": [f"a{i}", f"alias {i}"]} for i in range(12)]
    path = write_task(tmp_path / "trivia", train=trivia[:6], eval_rows=trivia[6:])
    assert [(r.output, r.alternatives) for r in load_splits(load_task(path)).eval[:1]] == [("a6", ["alias 6"])]


def test_record_key_ignores_surrounding_whitespace():
    assert Record(" a", "b ").key() == Record("a", "b").key()


def test_detect_format_unknown():
    assert detect_format({"foo": 1}) is None


def test_dolly_records_and_columns_that_join_a_passage_and_a_question(tmp_path):
    from foundation.config import ColumnMapping

    dolly = [{"instruction": "When was it built?", "context": "The bridge opened in 1932.", "response": "1932",
              "category": "closed_qa"}, {"instruction": "Name a colour.", "context": "", "response": "Blue"}]
    records, fmt = load_records(write_jsonl(tmp_path / "d.jsonl", dolly))
    assert fmt == "dolly" and records[0].input == "When was it built?\n\nThe bridge opened in 1932."
    assert (records[1].input, records[1].output) == ("Name a colour.", "Blue")
    boolq = [{"question": "is the sky green", "passage": "The sky is blue on clear days.", "answer": False}]
    mapping = ColumnMapping(input=["passage", "question"], output="answer")
    records, _ = load_records(write_jsonl(tmp_path / "b.jsonl", boolq), columns=mapping)
    assert (records[0].input, records[0].output) == ("The sky is blue on clear days.\n\nis the sky green", "False")
    with pytest.raises(AdviseError) as err:
        load_records(write_jsonl(tmp_path / "c.jsonl", [{"question": "q", "answer": "a"}]), columns=mapping, shown="c.jsonl")
    assert "no column 'passage'" in err.value.one_line() and err.value.where == 1


def test_tool_call_turns_are_refused_by_name(tmp_path):
    row = {"messages": [{"role": "user", "content": "Weather in Oslo?"},
                        {"role": "assistant", "content": None, "tool_calls": [{"id": "1", "type": "function"}]},
                        {"role": "tool", "content": "rain"}, {"role": "assistant", "content": "Rain."}]}
    with pytest.raises(AdviseError) as err:
        load_records(write_jsonl(tmp_path / "t.jsonl", [row]), shown="t.jsonl")
    assert err.value.where == 1 and "messages[1] is a tool or function-call turn" in err.value.one_line()
