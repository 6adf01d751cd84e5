"""Readers: the three formats on tiny files, format detection, and every bad input as a DataError
that names the file and, where there is one, the line."""

from __future__ import annotations

import numpy as np
import pytest

from csrec.data.readers import detect_format, read_interactions
from csrec.errors import DataError


# --- good inputs --------------------------------------------------------------------------------
def test_csv_with_session_id_and_rating(write_file):
    path = write_file("sessions.csv", "session_id,item_id,rating\n7,100,1\n7,101,1\n8,100,1\n")
    frame = read_interactions(path)
    assert list(frame.columns) == ["user", "item", "rating"]
    assert frame["user"].tolist() == [7, 7, 8]
    assert frame["item"].tolist() == [100, 101, 100]
    assert frame["rating"].tolist() == [1.0, 1.0, 1.0]
    assert frame["user"].dtype == np.int64 and frame["item"].dtype == np.int64
    assert frame["rating"].dtype == np.float64


def test_csv_with_user_id_rating_and_timestamp(write_file):
    # Spaces after commas and a trailing blank line are tolerated.
    path = write_file(
        "users.csv", "user_id, item_id, rating, timestamp\n3, 30, 4.5, 1000\n3, 31, 2, 999.5\n4, 30, 5, 7\n\n"
    )
    frame = read_interactions(path)
    assert list(frame.columns) == ["user", "item", "rating", "timestamp"]
    assert frame["user"].tolist() == [3, 3, 4]
    assert frame["item"].tolist() == [30, 31, 30]
    assert frame["rating"].tolist() == [4.5, 2.0, 5.0]
    assert frame["timestamp"].tolist() == [1000.0, 999.5, 7.0]  # file order: no sorting in a reader
    assert frame["timestamp"].dtype == np.float64


def test_csv_without_optional_columns_and_with_extra_ones(write_file):
    path = write_file("plain.csv", "note,user_id,item_id\na,1,2\nb,1,3\n")
    frame = read_interactions(path)
    assert list(frame.columns) == ["user", "item"]
    assert frame.to_dict("list") == {"user": [1, 1], "item": [2, 3]}


def test_csv_prefers_session_id_over_user_id(write_file):
    path = write_file("both.csv", "user_id,session_id,item_id\n1,10,5\n1,11,6\n")
    assert read_interactions(path)["user"].tolist() == [10, 11]


def test_user_lines(write_file):
    path = write_file("seqs.txt", "1 10 11 12\n2 11 13\n\n3 10 10\n")
    frame = read_interactions(path)
    assert list(frame.columns) == ["user", "item"]
    assert frame["user"].tolist() == [1, 1, 1, 2, 2, 3, 3]
    assert frame["item"].tolist() == [10, 11, 12, 11, 13, 10, 10]


def test_recbole_inter_with_typed_header(write_file):
    path = write_file(
        "Tiny.inter",
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\treview:token_seq\n"
        "1\t5\t4.0\t100\tgood\n"
        "1\t6\t2.0\t90\tmeh\n"
        "2\t5\t5.0\t80\tok\n",
    )
    frame = read_interactions(path)
    assert list(frame.columns) == ["user", "item", "rating", "timestamp"]
    assert frame["user"].tolist() == [1, 1, 2]
    assert frame["item"].tolist() == [5, 6, 5]
    assert frame["rating"].tolist() == [4.0, 2.0, 5.0]
    assert frame["timestamp"].tolist() == [100.0, 90.0, 80.0]


def test_recbole_inter_without_rating(write_file):
    path = write_file("NoRating.inter", "item_id:token\tuser_id:token\n5\t1\n6\t1\n")
    frame = read_interactions(path)
    assert list(frame.columns) == ["user", "item"]
    assert frame.to_dict("list") == {"user": [1, 1], "item": [5, 6]}


# --- format detection ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, text, expected",
    [
        ("a.csv", "user_id,item_id\n1,2\n", "csv"),
        ("a.CSV", "user_id,item_id\n1,2\n", "csv"),
        ("a.inter", "user_id:token\titem_id:token\n1\t2\n", "inter"),
        ("a.txt", "1 2 3 4\n", "lines"),
        ("Yelp", "1 2 3 4\n", "lines"),
        ("a.txt", "user_id:token\titem_id:token\n1\t2\n", "inter"),  # header decides without a known suffix
        ("a.dat", "session_id,item_id\n1,2\n", "csv"),
        ("a.csv", "1 2 3\n", "csv"),  # the extension wins over the content
    ],
)
def test_detect_format(write_file, name, text, expected):
    assert detect_format(write_file(name, text)) == expected


def test_explicit_format_overrides_detection(write_file):
    path = write_file("looks_like_lines.txt", "user_id,item_id\n1,2\n1,3\n")
    assert detect_format(path) == "csv"
    assert read_interactions(path, "csv")["item"].tolist() == [2, 3]
    with pytest.raises(DataError, match="non-integer id 'user_id,item_id'"):
        read_interactions(path, "lines")


# --- bad inputs ---------------------------------------------------------------------------------
BAD_FILES = [
    # (file name, content, message fragments besides the file name)
    ("extra.csv", "session_id,item_id\n1,2\n1,3,4\n1,5\n", ["line 3"]),
    # Every row with one field too many: pandas would silently shift the columns.
    ("shifted.csv", "session_id,item_id,rating\n1,2,5,9\n1,3,4,9\n", ["line 2"]),
    ("extra.inter", "user_id:token\titem_id:token\n1\t2\n1\t3\t4\n", ["line 3"]),
    ("shifted.inter", "user_id:token\titem_id:token\n1\t2\t7\n1\t3\t7\n", ["line 2"]),
    ("noitem.csv", "session_id,rating\n1,5\n", ["missing column 'item_id'", "session_id, rating"]),
    ("nouser.csv", "item_id,rating\n1,5\n", ["'session_id' or 'user_id'"]),
    ("nouser.inter", "uid:token\titem_id:token\n1\t2\n", ["line 1", "'user_id'", "uid"]),
    ("untyped.inter", "user_id\titem_id:token\n1\t2\n", ["line 1", "'user_id'", "name:type"]),
    ("word.csv", "user_id,item_id\n1,2\n1,abc\n", ["line 3", "'item_id'", "'abc'"]),
    ("float.csv", "user_id,item_id\n1,2\n1.5,3\n", ["line 3", "'user_id'", "'1.5'"]),
    ("sci.csv", "user_id,item_id\n1,2e3\n", ["line 2", "'2e3'"]),
    ("rating.csv", "user_id,item_id,rating\n1,2,5\n1,3,good\n", ["line 3", "'rating'", "number"]),
    ("time.inter", "user_id:token\titem_id:token\ttimestamp:float\n1\t2\t5\n1\t3\tyesterday\n", ["line 3", "'timestamp'"]),
    ("word.inter", "user_id:token\titem_id:token\n1\t2\nbob\t3\n", ["line 3", "'bob'"]),
    ("empty_value.csv", "user_id,item_id,rating\n1,2,5\n1,3,\n", ["line 3", "empty value", "'rating'"]),
    ("short_row.csv", "user_id,item_id,rating\n1,2\n", ["line 2", "empty value"]),
    # A blank line before the bad row must not shift the reported line number.
    ("blank_then_bad.csv", "user_id,item_id\n1,2\n\n1,x\n", ["line 4", "'x'"]),
    ("blank_then_bad.inter", "user_id:token\titem_id:token\n1\t2\n\n1\tx\n", ["line 4", "'x'"]),
    ("word.txt", "1 2 3\n4 5 x 6\n", ["line 2", "non-integer id 'x'"]),
    ("lonely.txt", "1 2 3\n\n4\n", ["line 3", "no items"]),
    ("dup.csv", "user_id,item_id,item_id\n1,2,3\n", ["line 1", "duplicate", "'item_id'"]),
    ("empty.csv", "", ["empty"]),
    ("empty.inter", "", ["empty"]),
    ("empty.txt", "", ["empty"]),
    ("newline.csv", "\n", ["empty"]),
    ("header.csv", "session_id,item_id,rating\n", ["header but no interactions"]),
    ("header_blank.csv", "session_id,item_id\n\n\n", ["header but no interactions"]),
    ("header.inter", "user_id:token\titem_id:token\trating:float\n", ["header but no interactions"]),
    ("blank.txt", "\n  \n\n", ["no interactions"]),
]


@pytest.mark.parametrize("name, text, fragments", BAD_FILES, ids=[case[0] for case in BAD_FILES])
def test_bad_input_names_file_and_line(write_file, name, text, fragments):
    path = write_file(name, text)
    with pytest.raises(DataError) as info:
        read_interactions(path)
    message = str(info.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    assert "Traceback" not in message


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_interactions(tmp_path / "absent.csv")


def test_unknown_format_lists_valid_ones(write_file):
    path = write_file("x.csv", "user_id,item_id\n1,2\n")
    with pytest.raises(DataError) as info:
        read_interactions(path, "xml")
    assert str(path) in str(info.value) and "'xml'" in str(info.value)
    assert "csv, lines, inter" in str(info.value)


# --- undecodable files ----------------------------------------------------------------------------
UNDECODABLE = [
    # (file name, bytes, explicit format or None, line of the first byte that is not UTF-8, that byte)
    ("latin1.csv", "user_id,item_id,title\n1,2,ok\n1,3,café\n".encode("latin-1"), None, 3, 0xE9),
    ("latin1.inter", "user_id:token\titem_id:token\n1\t2\n2\t\xe9\n".encode("latin-1"), None, 3, 0xE9),
    ("latin1_header.inter", "us\xe9r_id:token\titem_id:token\n1\t2\n".encode("latin-1"), None, 1, 0xE9),
    ("Yelp.txt", b"1 2 3\n4 5 6\n\x89PNG\r\n\x1a\n", None, 3, 0x89),
    ("utf16.csv", "user_id,item_id\n1,2\n".encode("utf-16"), None, 1, 0xFF),
    # No known suffix: format detection reads the first line and must report it the same way.
    ("archive", b"\x1f\x8b\x08\x00" + bytes(range(256)), None, 1, 0x8B),
    # An explicit format skips detection; each reader reports on its own.
    ("archive.bin", b"\x1f\x8b\x08\x00" + bytes(range(256)), "csv", 1, 0x8B),
    ("archive.bin", b"\x1f\x8b\x08\x00" + bytes(range(256)), "lines", 1, 0x8B),
    ("archive.bin", b"\x1f\x8b\x08\x00" + bytes(range(256)), "inter", 1, 0x8B),
]


@pytest.mark.parametrize(
    "name, payload, fmt, line, byte", UNDECODABLE, ids=[f"{c[0]}-{c[2]}" for c in UNDECODABLE]
)
def test_undecodable_file_is_a_one_line_error_naming_file_and_line(tmp_path, name, payload, fmt, line, byte):
    path = tmp_path / name
    path.write_bytes(payload)
    with pytest.raises(DataError) as info:
        read_interactions(path, fmt)
    message = str(info.value)
    assert message.startswith(f"{path}, line {line}: not UTF-8 text (byte 0x{byte:02x} ")
    assert "\n" not in message
    assert info.value.__suppress_context__  # no UnicodeDecodeError chained into a traceback


def test_every_reader_reports_undecodable_files_itself(tmp_path):
    from csrec.data.readers import read_atomic_inter, read_csv, read_user_lines

    path = tmp_path / "binary.dat"
    path.write_bytes(b"\x00\xff\xfe\x00" * 8)
    for reader in (read_csv, read_user_lines, read_atomic_inter, detect_format):
        with pytest.raises(DataError, match=r"binary\.dat, line 1: not UTF-8 text \(byte 0xff at byte 2 "):
            reader(path)


@pytest.mark.parametrize(
    "name, text",
    [
        ("bom.csv", "user_id,item_id\n1,2\n1,3\n"),
        ("bom.inter", "user_id:token\titem_id:token\n1\t2\n1\t3\n"),
        ("bom.txt", "1 2 3\n"),
    ],
)
def test_a_byte_order_mark_is_not_part_of_the_first_field(tmp_path, name, text):
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8-sig"))
    assert read_interactions(path).to_dict("list") == {"user": [1, 1], "item": [2, 3]}
