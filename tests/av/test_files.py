"""Keeping a file in a folder several processes share: whole or not at all."""

from __future__ import annotations

from pathlib import Path

from wanbatch.av.files import keep_file


def test_a_kept_file_appears_whole_under_its_name(tmp_path: Path) -> None:
    path = tmp_path / "timelines" / "abc-1.otio"  # its folder is made
    assert keep_file(path, lambda staged: staged.write_text("first", encoding="utf-8"))
    assert keep_file(path, lambda staged: staged.write_text("second", encoding="utf-8"))  # replaced in place
    assert path.read_text(encoding="utf-8") == "second"
    assert [p.name for p in path.parent.iterdir()] == ["abc-1.otio"]  # no staging file left


def test_a_file_that_cannot_be_written_is_not_kept_and_leaves_nothing(tmp_path: Path) -> None:
    path = tmp_path / "checked" / "x.json"

    def half_then_fail(staged: Path) -> None:
        staged.write_text("{half", encoding="utf-8")
        raise OSError("no space left on device")

    assert keep_file(path, half_then_fail) is False
    assert list(path.parent.iterdir()) == []  # neither the file nor the half-written staging file
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    assert keep_file(blocked / "x.json", lambda staged: staged.write_text("{}")) is False
