"""Manifest readers turn files, folders, URLs and manifests into references with options."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from picpik.errors import InvalidInput
from producers.manifest import (
    Entry,
    group_by_options,
    option_from_text,
    read_manifest,
    read_references,
    validate_entries,
)


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not really an image; the readers never open it")
    return path


def test_a_folder_yields_its_visible_images_recursively_and_nothing_else(tmp_path: Path) -> None:
    a = _touch(tmp_path / "photos" / "a.JPG")
    b = _touch(tmp_path / "photos" / "deeper" / "b.png")
    _touch(tmp_path / "photos" / "notes.txt")
    _touch(tmp_path / "photos" / "deeper" / "c.gif")
    _touch(tmp_path / "photos" / "._a.JPG")
    _touch(tmp_path / "photos" / ".thumbnails" / "t.png")
    entries = read_references([str(tmp_path / "photos")])
    assert [e.reference for e in entries] == sorted([str(a.resolve()), str(b.resolve())])


def test_files_become_absolute_paths_and_urls_stay_as_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _touch(tmp_path / "one.webp")
    monkeypatch.chdir(tmp_path)
    url = "https://example.com/cat.jpg?size=large"
    entries = read_references(["one.webp", url])
    assert [e.reference for e in entries] == [str((tmp_path / "one.webp").resolve()), url]


def test_a_file_url_becomes_the_files_path(tmp_path: Path) -> None:
    image = _touch(tmp_path / "with space.png")
    [entry] = read_references([image.as_uri()])
    assert entry.reference == str(image.resolve())


def test_a_missing_path_is_refused_naming_it(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=r"nowhere\.png") as caught:
        read_references([str(tmp_path / "nowhere.png")])
    assert caught.value.field == "reference"


def test_a_scheme_other_than_http_is_refused() -> None:
    with pytest.raises(InvalidInput, match="only http and https"):
        read_references(["ftp://example.com/a.png"])


def test_a_txt_manifest_skips_comments_and_blank_lines(tmp_path: Path) -> None:
    image = _touch(tmp_path / "imgs" / "x.png")
    manifest = tmp_path / "list.txt"
    manifest.write_text("# my photos\n\nimgs/x.png\n  http://example.com/y.jpg  \n# end\n")
    entries = read_manifest(manifest)
    assert [e.reference for e in entries] == [str(image.resolve()), "http://example.com/y.jpg"]
    assert entries[0].source == f"{manifest}:3"


def test_a_csv_manifest_reads_option_columns_in_their_types(tmp_path: Path) -> None:
    _touch(tmp_path / "a.png")
    manifest = tmp_path / "list.csv"
    manifest.write_text(
        "reference,Box,ErodeSize,only_mask,HairOptimization\n"
        'a.png,"1,2,30,40",5,true,on\n'
        "http://example.com/b.png,,,,\n"
    )
    first, second = read_manifest(manifest)
    assert first.options == {
        "box": (1, 2, 30, 40),
        "erode_size": 5,
        "only_mask": True,
        "hair_optimization": "on",
    }
    assert second.reference == "http://example.com/b.png"
    assert second.options == {}


def test_a_csv_manifest_without_a_reference_column_is_refused(tmp_path: Path) -> None:
    manifest = tmp_path / "list.csv"
    manifest.write_text("path,ErodeSize\na.png,4\n")
    with pytest.raises(InvalidInput, match="reference"):
        read_manifest(manifest)


def test_a_jsonl_manifest_keeps_each_objects_options(tmp_path: Path) -> None:
    manifest = tmp_path / "list.jsonl"
    rows = [
        {"reference": "https://example.com/a.png", "RemoveType": "Anime", "Box": [0, 0, 9, 9]},
        {"reference": "https://example.com/b.png", "erode_size": 0},
    ]
    manifest.write_text("\n".join(json.dumps(row) for row in rows) + "\n\n")
    first, second = read_manifest(manifest)
    assert first.options == {"remove_type": "Anime", "box": [0, 0, 9, 9]}
    assert second.options == {"erode_size": 0}


def test_an_unknown_option_in_a_manifest_is_refused_naming_it(tmp_path: Path) -> None:
    manifest = tmp_path / "list.jsonl"
    manifest.write_text(json.dumps({"reference": "https://e.com/a.png", "Erode": 3}) + "\n")
    with pytest.raises(InvalidInput, match="Erode") as caught:
        read_manifest(manifest)
    assert caught.value.field == "Erode"


def test_a_manifest_of_another_kind_is_refused(tmp_path: Path) -> None:
    manifest = tmp_path / "list.yaml"
    manifest.write_text("- a.png\n")
    with pytest.raises(InvalidInput, match=r"\.txt, \.csv or \.jsonl"):
        read_manifest(manifest)


def test_text_values_that_do_not_convert_are_left_for_validation_to_name() -> None:
    assert option_from_text("erode_size", "lots") == "lots"
    assert option_from_text("box", "1,2,x,4") == "1,2,x,4"
    assert option_from_text("only_mask", "FALSE") is False


def test_an_entrys_own_options_win_over_the_defaults_and_each_bad_one_is_named() -> None:
    entries = [
        Entry("a.png", {"erode_size": 3}),
        Entry("b.png", {}),
        Entry("c.png", {"Box": (5, 5, 1, 1)}),
        Entry("d.png", {"remove_type": "Photo"}),
    ]
    jobs, refusals = validate_entries(entries, {"erode_size": 10, "only_mask": True})
    assert jobs == [
        ("a.png", {"erode_size": 3, "only_mask": True}),
        ("b.png", {"erode_size": 10, "only_mask": True}),
    ]
    assert [r.split(":")[0:2] for r in refusals] == [["c.png", " field Box"],
                                                     ["d.png", " field RemoveType"]]


def test_jobs_with_the_same_options_are_grouped_for_one_bulk_publish() -> None:
    jobs = [("a", {"erode_size": 1}), ("b", {}), ("c", {"erode_size": 1}), ("d", {})]
    assert group_by_options(jobs) == [({"erode_size": 1}, ["a", "c"]), ({}, ["b", "d"])]


def test_a_csv_manifest_saved_with_a_byte_order_mark_still_has_its_reference_column(
    tmp_path: Path,
) -> None:
    image = _touch(tmp_path / "a.png")
    manifest = tmp_path / "excel.csv"
    manifest.write_bytes("reference,ErodeSize\na.png,4\n".encode("utf-8-sig"))
    [entry] = read_manifest(manifest)
    assert entry.reference == str(image.resolve())
    assert entry.options == {"erode_size": 4}


def test_a_manifest_given_as_an_image_is_refused_with_the_flag_to_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "list.txt").write_text("a.png\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InvalidInput, match=r"pass it as --manifest list\.txt") as caught:
        read_references(["list.txt"])
    assert caught.value.field == "reference"


def test_text_that_only_looks_numeric_is_left_for_validation_to_name() -> None:
    assert option_from_text("erode_size", "+-5") == "+-5"
    assert option_from_text("foreground_threshold", "²") == "²"
    assert option_from_text("box", " 1, 2 ,30,40 ") == (1, 2, 30, 40)


def test_a_refusal_of_a_manifest_entry_names_the_manifest_and_line(tmp_path: Path) -> None:
    _touch(tmp_path / "a.png")
    manifest = tmp_path / "list.csv"
    manifest.write_text("reference,ErodeSize\n\na.png,99\n")
    _, [refusal] = validate_entries(read_manifest(manifest), {})
    assert refusal.startswith(f"{(tmp_path / 'a.png').resolve()}: field ErodeSize: ")
    assert refusal.endswith(f" ({manifest}:3)")
