"""Readers that turn what a user points at into image references with their options.

A reference is an http/https URL or a local file. Folders are walked recursively for images
(by extension); a manifest lists references, one per line (`.txt`, `#` comments), as rows with a
`reference` column and option columns (`.csv`), or as JSON objects (`.jsonl`). Option names are
the API's (`ErodeSize`) or their Python spelling (`erode_size`). Relative paths in a manifest are
read relative to the manifest's own folder, so a manifest travels with its images.
The readers do not judge option values; `validate_entries` checks every entry at once, so a
caller can refuse the whole run before queueing anything.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from picpik.errors import InvalidInput
from picpik.models import RemoveBackgroundOptions, parse_options

__all__ = [
    "IMAGE_EXTENSIONS",
    "MANIFEST_EXTENSIONS",
    "Entry",
    "group_by_options",
    "group_indexes_by_options",
    "read_manifest",
    "read_references",
    "validate_entries",
]

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"})
MANIFEST_EXTENSIONS = frozenset({".txt", ".csv", ".jsonl"})
URL_SCHEMES = frozenset({"http", "https"})

# API name and Python name of every option -> the Python name.
_OPTION_NAMES: dict[str, str] = {}
for _name, _info in RemoveBackgroundOptions.model_fields.items():
    _OPTION_NAMES[_name] = _name
    _OPTION_NAMES[str(_info.alias)] = _name
_INT_OPTIONS = frozenset({"erode_size", "foreground_threshold", "background_threshold"})


@dataclass(frozen=True)
class Entry:
    """One image to cut out: its reference, the options it sets, and where it was listed
    (`MANIFEST:LINE`; empty for the command line)."""

    reference: str
    options: dict[str, Any] = field(default_factory=dict)
    source: str = ""


def is_url(text: str) -> bool:
    return urlsplit(text).scheme.lower() in URL_SCHEMES


def read_references(items: Iterable[str], manifests: Iterable[Path] = ()) -> list[Entry]:
    """Every entry named on a command line: URLs, files, folders, then the manifests' entries.

    Raises InvalidInput (field `reference`) for a path that does not exist, a scheme that is
    not http/https, or a manifest given as an image.
    """
    entries: list[Entry] = []
    for item in items:
        if Path(item).suffix.lower() in MANIFEST_EXTENSIONS and Path(item).is_file():
            # A list of images is never an image: say how to pass it instead of queueing a job
            # that can only fail.
            raise InvalidInput(f"{item} looks like a manifest: pass it as --manifest {item}",
                               field="reference")
        entries.extend(Entry(reference) for reference in _expand(item, base=Path.cwd()))
    for manifest in manifests:
        entries.extend(read_manifest(manifest))
    return entries


def read_manifest(path: Path) -> list[Entry]:
    """The entries of one manifest, chosen by its extension (.txt, .csv or .jsonl)."""
    suffix = path.suffix.lower()
    readers = {".txt": _txt_rows, ".csv": _csv_rows, ".jsonl": _jsonl_rows}
    if suffix not in readers:
        raise InvalidInput(
            f"manifest {path} must end in .txt, .csv or .jsonl", field="manifest"
        )
    if not path.is_file():
        raise InvalidInput(f"manifest {path} does not exist", field="manifest")
    entries: list[Entry] = []
    base = path.parent.resolve()
    for line_no, item, options in readers[suffix](path):
        source = f"{path}:{line_no}"
        entries.extend(Entry(reference, options, source) for reference in _expand(item, base=base))
    return entries


def _expand(item: str, *, base: Path) -> list[str]:
    """A URL as is; a file (or file:// URL) as its absolute path; a folder as the images
    inside it."""
    text = item.strip()
    if is_url(text):
        return [text]
    if text.lower().startswith("file://"):
        text = unquote(urlsplit(text).path)
    if "://" in text:
        raise InvalidInput(f"{text}: only http and https URLs are accepted", field="reference")
    path = Path(text).expanduser()
    path = path if path.is_absolute() else base / path
    if path.is_dir():
        return [str(image) for image in _images_under(path)]
    if path.is_file():
        return [str(path.resolve())]
    raise InvalidInput(f"{text}: no such file, folder or URL", field="reference")


def _images_under(folder: Path) -> list[Path]:
    """Image files below `folder`, sorted; hidden ones (`.name`, e.g. macOS's `._photo.jpg`
    resource forks) and those in hidden folders are left out."""
    found = (
        p for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_EXTENSIONS
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )
    return sorted(p.resolve() for p in found if p.is_file())


Row = tuple[int, str, dict[str, Any]]


# utf-8-sig: a byte order mark (Excel's "CSV UTF-8", Notepad) is dropped instead of becoming
# part of the first reference or column name.
ENCODING = "utf-8-sig"


def _txt_rows(path: Path) -> Iterator[Row]:
    for line_no, line in enumerate(path.read_text(encoding=ENCODING).splitlines(), start=1):
        text = line.strip()
        if text and not text.startswith("#"):
            yield line_no, text, {}


def _csv_rows(path: Path) -> Iterator[Row]:
    with path.open(newline="", encoding=ENCODING) as handle:
        reader = csv.DictReader(handle)
        if "reference" not in (reader.fieldnames or []):
            raise InvalidInput(f"manifest {path} has no 'reference' column", field="reference")
        for row in reader:
            reference = (row.pop("reference") or "").strip()
            if reference and not reference.startswith("#"):
                # Line 1 is the header.
                yield reader.line_num, reference, _options_from_text(row, str(path))


def _jsonl_rows(path: Path) -> Iterator[Row]:
    for line_no, line in enumerate(path.read_text(encoding=ENCODING).splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{line_no}"
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"{where}: not JSON ({exc.msg})", field="manifest") from exc
        if not isinstance(item, dict) or not isinstance(item.get("reference"), str):
            raise InvalidInput(f"{where}: needs a 'reference' string", field="reference")
        reference = item.pop("reference")
        yield line_no, reference, _option_names(item, where)


def _option_names(values: dict[str, Any], where: str) -> dict[str, Any]:
    """The options under their Python names; an unknown name is refused."""
    options: dict[str, Any] = {}
    for name, value in values.items():
        if name not in _OPTION_NAMES:
            raise InvalidInput(f"{where}: unknown option {name!r}", field=name)
        options[_OPTION_NAMES[name]] = value
    return options


def _options_from_text(row: dict[str, str | None], where: str) -> dict[str, Any]:
    """CSV cells are text: empty cells are unset, the rest becomes the option's own type."""
    filled = {name: (value or "").strip() for name, value in row.items() if name}
    named = _option_names({k: v for k, v in filled.items() if v}, where)
    return {name: option_from_text(name, value) for name, value in named.items()}


def option_from_text(name: str, value: str) -> Any:
    """One option value written as text (`10,20,200,300`, `15`, `true`) in its own type.

    Values that do not convert are returned unchanged, so validation names the field.
    """
    if name == "box":
        numbers = [_int_or_none(part) for part in value.split(",")]
        return value if None in numbers else tuple(numbers)
    if name in _INT_OPTIONS:
        number = _int_or_none(value)
        return value if number is None else number
    if name == "only_mask":
        lowered = value.lower()
        if lowered in {"true", "1", "yes"}:
            return True
        if lowered in {"false", "0", "no"}:
            return False
    return value


def _int_or_none(text: str) -> int | None:
    try:
        return int(text)  # int() itself strips whitespace
    except ValueError:
        return None


Job = tuple[str, dict[str, Any]]


def validate_entries(
    entries: Sequence[Entry], defaults: Mapping[str, Any]
) -> tuple[list[Job], list[str]]:
    """Every entry's options (its own over `defaults`) checked by the API's rules.

    Returns the jobs (reference, options by Python name) and one refusal per bad entry,
    `REFERENCE: field FIELD: reason` (then `(MANIFEST:LINE)` for an entry a manifest listed);
    a caller queues nothing unless the refusals are empty.
    """
    jobs: list[Job] = []
    refusals: list[str] = []
    for entry in entries:
        try:
            options = parse_options({**defaults, **entry.options})
        except InvalidInput as exc:
            where = f" ({entry.source})" if entry.source else ""
            refusals.append(f"{entry.reference}: field {exc.field}: {exc.message}{where}")
            continue
        jobs.append((entry.reference, options.model_dump(exclude_none=True)))
    return jobs, refusals


def group_by_options(jobs: Sequence[Job]) -> list[tuple[dict[str, Any], list[str]]]:
    """Jobs that share the same options together (one bulk publish each), in first-seen order."""
    return [(options, [jobs[i][0] for i in indexes])
            for options, indexes in group_indexes_by_options(jobs)]


def group_indexes_by_options(jobs: Sequence[Job]) -> list[tuple[dict[str, Any], list[int]]]:
    """The same groups as group_by_options, as positions in `jobs`."""
    groups: dict[str, tuple[dict[str, Any], list[int]]] = {}
    for i, (_, options) in enumerate(jobs):
        key = json.dumps(options, sort_keys=True, default=list)
        groups.setdefault(key, (options, []))[1].append(i)
    return list(groups.values())
