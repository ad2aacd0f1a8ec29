"""launch/reliability/metrics.py: the one reader of metrics.jsonl, and a resume's cut of the rows."""

import json
import logging

import pytest

from launch.reliability.metrics import drop_rows_after, line_of, read_rows

ROWS = [
    {"step": 10, "phase": "offline", "time": 0.5, "offline/loss": 1.25},
    {"step": 20, "phase": "online", "time": 1.0, "eval/success": None},
]


def test_rows_read_back_as_written(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(line_of(row) for row in ROWS))
    assert read_rows(path) == (ROWS, False)


def test_a_torn_last_line_is_dropped_with_a_warning(tmp_path, caplog):
    path = tmp_path / "metrics.jsonl"
    path.write_text(line_of(ROWS[0]) + json.dumps(ROWS[1])[:11])
    with caplog.at_level(logging.WARNING):
        assert read_rows(path) == ([ROWS[0]], True)
    (warning,) = [record.getMessage() for record in caplog.records]
    assert warning == f"{path}: dropping its torn last line '{{\"step\": 20' (a write cut short)"


def test_a_bad_line_before_the_last_names_the_file_and_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text(line_of(ROWS[0]) + "not json\n" + line_of(ROWS[1]))
    with pytest.raises(ValueError, match=f"{path} line 2 is not JSON: 'not json'"):
        read_rows(path)


def test_a_resume_drops_the_rows_after_its_step_and_keeps_the_rest_byte_for_byte(tmp_path):
    path = tmp_path / "metrics.jsonl"
    written = "".join(line_of(row) for row in ROWS)
    path.write_text(written + '{"step": 30, "ph')
    drop_rows_after(path, 20)
    assert path.read_text() == written
    drop_rows_after(path, 15)
    assert path.read_text() == line_of(ROWS[0])
    drop_rows_after(tmp_path / "absent.jsonl", 15)
    assert not (tmp_path / "absent.jsonl").exists()
