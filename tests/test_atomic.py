import os
import stat

import numpy as np
import pytest

from csrec.atomic import atomic_path, write_atomic


def test_write_atomic_replaces_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "sub" / "table.md"
    write_atomic(target, "old")
    write_atomic(target, b"new")
    assert target.read_text() == "new"
    assert sorted(p.name for p in target.parent.iterdir()) == ["table.md"]


def test_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "summary.json"
    target.write_text("complete old content")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("writer died")
    assert target.read_text() == "complete old content"
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_temporary_keeps_the_suffix_for_format_sniffing_writers(tmp_path):
    with atomic_path(tmp_path / "fig.png") as tmp:
        assert tmp.suffix == ".png" and tmp.parent == tmp_path
        tmp.write_bytes(b"x")
    assert (tmp_path / "fig.png").read_bytes() == b"x"


@pytest.fixture
def umask():
    """``umask(0o027)`` sets the process umask for the rest of the test; restored afterwards."""
    original = os.umask(0o022)
    os.umask(original)
    yield os.umask
    os.umask(original)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600), (0o000, 0o666)])
def test_new_files_get_a_normal_writes_mode_under_the_umask(tmp_path, umask, mask, mode):
    umask(mask)
    plain = tmp_path / "plain.txt"
    plain.write_text("x")  # what any other program would create
    atomic = write_atomic(tmp_path / "table.md", "x")
    with atomic_path(tmp_path / "ranks.npz") as tmp:
        np.savez_compressed(tmp, ranks=np.arange(3))  # a writer that opens the temporary itself
    for path in (atomic, tmp_path / "ranks.npz"):
        assert stat.S_IMODE(path.stat().st_mode) == mode == stat.S_IMODE(plain.stat().st_mode), path


def test_replacing_a_file_keeps_its_mode_as_a_plain_write_does(tmp_path, umask):
    umask(0o022)
    target = tmp_path / "summary.json"
    target.write_text("old")
    target.chmod(0o640)  # a collaborator's group-only file
    write_atomic(target, "new")
    assert target.read_text() == "new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640


def test_failed_first_write_leaves_no_file_at_all(tmp_path):
    target = tmp_path / "out" / "results.parquet"
    with pytest.raises(OSError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"PAR1 half a table")
            raise OSError("disk full")
    assert not target.exists()
    assert list(target.parent.iterdir()) == []


def test_failed_write_of_an_unwritable_payload_keeps_the_old_file(tmp_path):
    target = tmp_path / "table.md"
    write_atomic(target, "complete")
    with pytest.raises(TypeError):
        write_atomic(target, 12345)  # neither str nor bytes: fails while writing
    assert target.read_text() == "complete"
    assert [p.name for p in tmp_path.iterdir()] == ["table.md"]
