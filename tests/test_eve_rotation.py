"""The inline worker's EVE sink (gateway/inline/worker.py AppendLines): whole lines per write, and the
reopen that SIGHUP triggers after logrotate renamed the file."""
from __future__ import annotations

import json

from gateway.events import EveWriter
from gateway.inline.worker import AppendLines


def lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_reopen_after_rename_moves_to_a_new_file_and_keeps_buffered_lines_in_the_old(tmp_path):
    path = tmp_path / "eve.json"
    sink = AppendLines(path)
    eve = EveWriter(sink)
    eve({"n": 1})
    eve.flush()
    eve({"n": 2})                                  # still buffered when logrotate renames
    rotated = tmp_path / "eve.json.1"
    path.rename(rotated)
    sink.reopen()
    eve({"n": 3})
    eve.close()
    sink.close()
    assert lines(rotated) == [{"n": 1}, {"n": 2}]
    assert lines(path) == [{"n": 3}]
    assert (path.stat().st_mode & 0o777) == 0o640


def test_reopen_that_cannot_open_keeps_writing_the_old_file(tmp_path, capsys):
    path = tmp_path / "logs" / "eve.json"
    sink = AppendLines(path)
    sink.write('{"n":1}\n')
    path.rename(tmp_path / "eve.json.1")
    (tmp_path / "logs").rmdir()
    (tmp_path / "logs").write_text("a file where the directory was")   # the path cannot be opened now
    sink.reopen()
    sink.write('{"n":2}\n')
    sink.close()
    assert lines(tmp_path / "eve.json.1") == [{"n": 1}, {"n": 2}]
    assert "cannot reopen EVE file" in capsys.readouterr().err


def test_truncation_with_o_append_leaves_no_hole(tmp_path):
    """What copytruncate would do: after the truncate the next write lands at the new end, not at the old
    offset (no NUL-filled hole); docs/operations.md still advises rename + SIGHUP (lines in between are lost)."""
    path = tmp_path / "eve.json"
    sink = AppendLines(path)
    sink.write('{"n":1}\n')
    sink.flush()
    path.write_bytes(b"")                          # truncate, as copytruncate does
    sink.write('{"n":2}\n')
    sink.close()
    assert path.read_bytes() == b'{"n":2}\n'
