"""UTKFace loading: file-name parsing, bad files, archives, splits and duplicates."""

from __future__ import annotations

import tarfile

import datasets
import pytest

from agegender.data import (
    DataSourceError,
    LabelError,
    assign_splits,
    load_utkface,
    parse_filename,
    select_split,
    summarize,
)
from conftest import synthetic_face


def test_parse_good_name():
    labels = parse_filename("UTKFace/26_1_2_20170116174525125.jpg.chip.jpg")
    assert (labels.age, labels.gender, labels.race, labels.issues) == (26, 1, 2, ())


@pytest.mark.parametrize(
    "name, race, issue",
    [
        ("39_1_20170116174525125.jpg.chip.jpg", None, "missing race"),  # race field missing
        ("14_0_0_2017011022340900.jpg.chip.jpg", 0, "timestamp of 16 digits"),
        ("38_0_1_201701162330572788.jpg.chip.jpg", 1, "timestamp of 18 digits"),
        ("55_0_0_20170116232725357jpg.chip.jpg", 0, "stray character in timestamp"),  # missing dot
        ("61_1_3_ 20170109142408075.jpg.chip.jpg", 3, "stray space"),
        ("20_0_9_20170109142408075.jpg.chip.jpg", None, "race 9 out of range"),
        ("20_0_1.jpg", 1, "missing timestamp"),
    ],
)
def test_parse_malformed_but_usable(name, race, issue):
    labels = parse_filename(name)
    assert labels.race == race
    assert issue in labels.issues
    assert labels.age in (39, 14, 38, 55, 61, 20)


@pytest.mark.parametrize(
    "name, message",
    [
        ("117_0_0_20170109142408075.jpg.chip.jpg", "outside"),
        ("30_2_0_20170109142408075.jpg.chip.jpg", "not in"),
        ("abc_0_0_20170109142408075.jpg.chip.jpg", "cannot read"),
        ("30.jpg", "cannot read"),
        ("_1_0_20170109142408075.jpg.chip.jpg", "cannot read"),
    ],
)
def test_parse_rejects_uncertain_labels(name, message):
    with pytest.raises(LabelError, match=message):
        parse_filename(name)


def test_folder_load_features_and_counts(utk_folder):
    dd, report = load_utkface(utk_folder, return_report=True)
    assert set(dd) == {"train", "validation", "test"}
    assert sum(len(d) for d in dd.values()) == 60 == report.kept
    feats = dd["train"].features
    assert isinstance(feats["image"], datasets.Image)
    assert feats["gender"].names == ["male", "female"]
    assert feats["race"].num_classes == 5
    row = dd["train"][0]
    assert row["image"].size == (48, 48) and isinstance(row["age"], int)


def test_archive_and_file_list_match_folder(utk_folder, utk_archive):
    a = load_utkface(utk_archive)
    f = load_utkface(utk_folder)
    files = load_utkface(sorted(utk_folder.iterdir()))
    for split in a:
        assert sorted(a[split]["file_name"]) == sorted(f[split]["file_name"]) == sorted(files[split]["file_name"])


def test_bad_files_are_skipped_and_reported(utk_folder):
    (utk_folder / "30_0_0_20170109142408075.jpg.chip.jpg").write_bytes(synthetic_face(99)[:300])  # truncated
    (utk_folder / "31_0_0_20170109142408076.jpg.chip.jpg").write_bytes(b"not a jpeg at all")
    (utk_folder / "32_1_0_20170109142408077.jpg.chip.jpg").write_bytes(b"")
    (utk_folder / "notes.txt").write_text("hello")
    (utk_folder / "200_0_0_20170109142408078.jpg.chip.jpg").write_bytes(synthetic_face(98))
    (utk_folder / "39_1_20170116174525125.jpg.chip.jpg").write_bytes(synthetic_face(97))  # missing race: kept
    dd, report = load_utkface(utk_folder, return_report=True)
    reasons = dict(report.skipped)
    assert report.kept == 61
    assert len(report.skipped) == 5
    assert any("unreadable image" in reasons[k] for k in reasons if "30_0_0" in k)
    assert any("empty file" in reasons[k] for k in reasons if "32_1_0" in k)
    assert any("not an image" in reasons[k] for k in reasons if k.endswith("notes.txt"))
    assert any("bad label" in reasons[k] for k in reasons if "200_0_0" in k)
    kept = {r["file_name"]: r["race"] for r in select_split(dd, "all").select_columns(["file_name", "race"])}
    assert kept["39_1_20170116174525125.jpg.chip.jpg"] == -1
    summary = report.as_dict()
    assert summary["skipped_by_reason"]["unreadable image"] == 2
    assert summary["issues_by_kind"] == {"missing race": 1}


def test_corrupt_image_inside_archive(tmp_path, utk_folder):
    (utk_folder / "30_0_0_20170109142408075.jpg.chip.jpg").write_bytes(synthetic_face(99)[:200])
    path = tmp_path / "bad.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        tar.add(utk_folder, arcname="UTKFace")
    dd, report = load_utkface(path, return_report=True)
    assert report.kept == 60 and len(report.skipped) == 1


def test_truncated_archive_keeps_what_it_read(tmp_path, utk_archive):
    data = utk_archive.read_bytes()
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(data[: len(data) * 2 // 3])
    dd, report = load_utkface(cut, return_report=True)
    assert 0 < report.kept < 60
    assert any("truncated" in reason for _, reason in report.skipped)


def test_not_an_archive_and_missing_and_empty(tmp_path):
    fake = tmp_path / "UTKFace.tar.gz"
    fake.write_text("this is not gzip")
    with pytest.raises(DataSourceError):
        load_utkface(fake)
    with pytest.raises(DataSourceError, match="does not exist"):
        load_utkface(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataSourceError, match="no usable"):
        load_utkface(empty)


def test_splits_deterministic_and_seeded(utk_folder):
    a = load_utkface(utk_folder, seed=1)
    b = load_utkface(utk_folder, seed=1)
    c = load_utkface(utk_folder, seed=2)
    assert all(a[s]["file_name"] == b[s]["file_name"] for s in a)
    assert any(sorted(a[s]["file_name"]) != sorted(c[s]["file_name"]) for s in a)


def test_duplicates_never_straddle_splits():
    records = []
    for i in range(200):
        sha = f"h{i // 2}"  # every content hash appears twice under two names
        records.append({"_sha": sha, "age": i % 90, "gender": i % 2})
    splits = assign_splits(records, seed=3)
    by_hash: dict[str, set] = {}
    for r, s in zip(records, splits):
        by_hash.setdefault(r["_sha"], set()).add(s)
    assert all(len(v) == 1 for v in by_hash.values())
    assert {"train", "validation", "test"} <= set(splits)
    assert 0.7 < splits.count("train") / len(splits) < 0.9


def test_duplicate_files_counted(utk_folder):
    src = utk_folder / sorted(p.name for p in utk_folder.iterdir())[0]
    (utk_folder / "45_1_1_20170109142408075.jpg.chip.jpg").write_bytes(src.read_bytes())
    dd, report = load_utkface(utk_folder, return_report=True)
    assert report.duplicate_groups == 1 and report.duplicate_files == 1
    where = [s for s in dd if "45_1_1_20170109142408075.jpg.chip.jpg" in dd[s]["file_name"]]
    assert src.name in dd[where[0]]["file_name"]


def test_summary_counts(utk_folder):
    dd, report = load_utkface(utk_folder, return_report=True)
    s = summarize(dd, report)
    assert s["total"] == 60
    assert sum(s["splits"]["train"]["gender"].values()) == s["splits"]["train"]["n"]
    assert select_split(dd, "all").num_rows == 60
    with pytest.raises(ValueError):
        select_split(dd, "dev")
