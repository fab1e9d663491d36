"""UTKFace through `datasets`: file-name labels, a skip report, and content-hash splits.

`load_utkface(source)` accepts the official archive (`UTKFace.tar.gz`), an extracted folder,
a list of files, or a Hub dataset repo we published as Parquet, and returns a
`datasets.DatasetDict` with `train`, `validation` and `test` splits.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import tarfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import datasets
from PIL import Image

log = logging.getLogger(__name__)

GENDERS = ("male", "female")
RACES = ("White", "Black", "Asian", "Indian", "Others")
AGE_RANGE = (0, 116)
AGE_BANDS = ((0, 4), (5, 12), (13, 19), (20, 29), (30, 39), (40, 49), (50, 59), (60, 69), (70, 79), (80, 116))
SPLITS = ("train", "validation", "test")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")

FEATURES = datasets.Features(
    {
        "image": datasets.Image(),
        "age": datasets.Value("int32"),
        "gender": datasets.ClassLabel(names=list(GENDERS)),
        "race": datasets.ClassLabel(names=list(RACES)),  # -1 marks an unknown race
        "file_name": datasets.Value("string"),
    }
)


class LabelError(ValueError):
    """A file name whose age or gender cannot be read with certainty."""


class DataSourceError(ValueError):
    """A source that cannot be read at all (missing, truncated archive, wrong type)."""


@dataclass(frozen=True)
class Labels:
    """Labels parsed from one UTKFace file name; `race` is None when the name lacks it."""

    age: int
    gender: int
    race: int | None
    issues: tuple[str, ...] = ()


def age_band(age: int) -> str:
    """The age band an age falls in, as a label such as '20-29' or '80+'."""
    for lo, hi in AGE_BANDS:
        if lo <= age <= hi:
            return f"{lo}+" if hi == AGE_RANGE[1] else f"{lo}-{hi}"
    raise ValueError(f"age {age} outside {AGE_RANGE}")


_NUM = re.compile(r"^\d+$")


def parse_filename(name: str) -> Labels:
    """Parse `<age>_<gender>_<race>_<date>.jpg.chip.jpg` (any directory prefix).

    Keeps what is certain and records the rest as issues: a missing race field, stray spaces or
    dots, a timestamp of the wrong length. Raises `LabelError` when the age or gender is not
    certain, or out of range.
    """
    base = os.path.basename(name)
    issues: list[str] = []
    if " " in base:
        issues.append("stray space")
        base = base.replace(" ", "")
    stem = base.split(".", 1)[0]
    if not re.search(r"\.jpe?g\.chip\.jpe?g$|^[^.]+\.(jpe?g|png)$", base, re.IGNORECASE):
        issues.append("unusual extension")
    fields = stem.split("_")
    if len(fields) < 2 or not _NUM.match(fields[0]) or not _NUM.match(fields[1]):
        raise LabelError(f"cannot read age and gender from {base!r}")
    age, gender = int(fields[0]), int(fields[1])
    if not AGE_RANGE[0] <= age <= AGE_RANGE[1]:
        raise LabelError(f"age {age} outside {AGE_RANGE[0]}..{AGE_RANGE[1]} in {base!r}")
    if gender not in (0, 1):
        raise LabelError(f"gender {gender} not in {{0, 1}} in {base!r}")
    rest = fields[2:]
    race: int | None = None
    stamp: str | None = None
    if rest and len(rest[0]) == 1 and rest[0].isdigit():
        race = int(rest[0])
        if race >= len(RACES):
            issues.append(f"race {race} out of range")
            race = None
        rest = rest[1:]
    else:
        issues.append("missing race")
    if rest:
        stamp = re.sub(r"\D", "", rest[0])
        if stamp != rest[0]:
            issues.append("stray character in timestamp")
        if len(stamp) != 17:
            issues.append(f"timestamp of {len(stamp)} digits")
    else:
        issues.append("missing timestamp")
    return Labels(age, gender, race, tuple(issues))


@dataclass
class LoadReport:
    """What a load kept and skipped, and why. `str(report)` is a readable summary."""

    source: str
    kept: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    kept_with_issues: list[tuple[str, str]] = field(default_factory=list)
    duplicate_groups: int = 0
    duplicate_files: int = 0

    def skip(self, name: str, reason: str) -> None:
        log.warning("skipping %s: %s", name, reason)
        self.skipped.append((name, reason))

    def as_dict(self) -> dict:
        return {
            "source": self.source,
            "kept": self.kept,
            "skipped": len(self.skipped),
            "skipped_by_reason": dict(Counter(_reason_kind(r) for _, r in self.skipped)),
            "skipped_files": [{"file": f, "reason": r} for f, r in self.skipped],
            "kept_with_issues": len(self.kept_with_issues),
            "issues_by_kind": dict(Counter(i for _, r in self.kept_with_issues for i in r.split("; "))),
            "kept_files_with_issues": [{"file": f, "issues": r} for f, r in self.kept_with_issues],
            "duplicate_groups": self.duplicate_groups,
            "duplicate_files": self.duplicate_files,
        }


def _reason_kind(reason: str) -> str:
    return reason.split(":")[0]


@dataclass(frozen=True)
class RawItem:
    name: str
    data: bytes


def _iter_archive(path: Path, report: LoadReport) -> Iterator[RawItem]:
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                fh = tar.extractfile(member)
                if fh is None:
                    continue
                yield RawItem(member.name, fh.read())
    except (tarfile.TarError, EOFError, OSError, Exception) as exc:  # zlib.error too
        if isinstance(exc, GeneratorExit):
            raise
        report.skip(str(path), f"archive truncated or corrupt: {type(exc).__name__}: {exc}")
        log.error("archive %s ends early (%s); keeping the %d files read before it", path, exc, report.kept)


def _iter_files(paths: Iterable[Path], report: LoadReport) -> Iterator[RawItem]:
    for p in paths:
        try:
            yield RawItem(str(p), Path(p).read_bytes())
        except OSError as exc:
            report.skip(str(p), f"unreadable: {exc}")


def _is_archive(path: Path) -> bool:
    return path.is_file() and (tarfile.is_tarfile(path) or path.name.endswith((".tar", ".tar.gz", ".tgz")))


def iter_source(source: str | os.PathLike | Sequence, report: LoadReport) -> Iterator[RawItem]:
    """Yield the raw files of an archive, a folder (recursively) or a list of files."""
    if isinstance(source, (list, tuple)):
        yield from _iter_files([Path(p) for p in source], report)
        return
    path = Path(source)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
        yield from _iter_files(files, report)
    elif path.is_file():
        if _is_archive(path):
            yield from _iter_archive(path, report)
        elif path.suffix.lower() in (".gz", ".tgz", ".tar"):
            raise DataSourceError(f"{path} is not a readable tar archive")
        else:
            yield from _iter_files([path], report)
    else:
        raise DataSourceError(f"{path} does not exist")


def _check_image(data: bytes) -> str | None:
    """None if `data` decodes fully as an image, else the reason it does not."""
    if not data:
        return "empty file"
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
    except Exception as exc:  # PIL raises many types for bad data
        return f"unreadable image: {type(exc).__name__}: {exc}"
    return None


def read_records(source, report: LoadReport | None = None) -> tuple[list[dict], LoadReport]:
    """Read every usable image of a local source into records, with a report of what was skipped."""
    report = report or LoadReport(str(source) if not isinstance(source, (list, tuple)) else f"{len(source)} files")
    records = []
    for item in iter_source(source, report):
        base = os.path.basename(item.name)
        if base.startswith("._") or not base.lower().endswith(IMAGE_SUFFIXES):
            report.skip(item.name, "not an image file name")
            continue
        try:
            labels = parse_filename(base)
        except LabelError as exc:
            report.skip(item.name, f"bad label: {exc}")
            continue
        problem = _check_image(item.data)
        if problem:
            report.skip(item.name, problem)
            continue
        if labels.issues:
            report.kept_with_issues.append((item.name, "; ".join(labels.issues)))
        records.append(
            {
                "image": {"bytes": item.data, "path": None},
                "age": labels.age,
                "gender": labels.gender,
                "race": -1 if labels.race is None else labels.race,
                "file_name": base,
                "_sha": hashlib.sha256(item.data).hexdigest(),
            }
        )
        report.kept += 1
    return records, report


def assign_splits(
    records: Sequence[dict], seed: int = 0, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
) -> list[str]:
    """Deterministic split per record, grouped by content hash and stratified by age band and gender.

    Byte-identical files share a hash, so they always land in the same split.
    """
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        groups.setdefault(r["_sha"], []).append(i)
    strata: dict[tuple, list[str]] = {}
    for sha, idx in groups.items():
        first = records[idx[0]]
        strata.setdefault((age_band(first["age"]), first["gender"]), []).append(sha)
    out = [""] * len(records)
    for key in sorted(strata):
        shas = sorted(strata[key], key=lambda s: hashlib.sha256(f"{seed}:{s}".encode()).hexdigest())
        n = len(shas)
        cut1 = round(n * fractions[0])
        cut2 = round(n * (fractions[0] + fractions[1]))
        for j, sha in enumerate(shas):
            split = SPLITS[0] if j < cut1 else SPLITS[1] if j < cut2 else SPLITS[2]
            for i in groups[sha]:
                out[i] = split
    return out


def _is_hub_repo_id(source) -> bool:
    """A string naming no local path and shaped like a Hub repo id (the loader's own rule)."""
    from .loading import looks_like_repo_id

    return isinstance(source, str) and not Path(source).exists() and looks_like_repo_id(source)


def load_utkface(
    source,
    seed: int = 0,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    return_report: bool = False,
    revision: str | None = None,
):
    """Load UTKFace from an archive, folder, list of files or Hub dataset repo id.

    Returns a `DatasetDict` (train/validation/test), or `(DatasetDict, LoadReport)` with
    `return_report=True`. Local sources are split here by content hash; a Hub repo keeps the
    splits it was published with.
    """
    if _is_hub_repo_id(source):
        # One download path for models and data: cached, pinnable, offline-aware, with clear errors.
        from .loading import fetch_snapshot

        local = fetch_snapshot(source, repo_type="dataset", revision=revision, error=DataSourceError,
                               allow_patterns=["README.md", "data/*.parquet"])
        try:
            dd = datasets.load_dataset(str(local))
        except FileNotFoundError as exc:  # no data files we can read: not one of our Parquet repos
            raise DataSourceError(f"{source} is not an agegender UTKFace dataset: {exc}") from exc
        missing = set(FEATURES) - set(next(iter(dd.values())).features)
        if missing:
            raise DataSourceError(f"{source} is not an agegender UTKFace dataset (missing {sorted(missing)})")
        report = LoadReport(source, kept=sum(len(d) for d in dd.values()))
        return (dd, report) if return_report else dd
    records, report = read_records(source)
    if not records:
        raise DataSourceError(f"no usable UTKFace images in {source} ({len(report.skipped)} skipped)")
    splits = assign_splits(records, seed, fractions)
    sizes = Counter(r["_sha"] for r in records)
    report.duplicate_groups = sum(1 for c in sizes.values() if c > 1)
    report.duplicate_files = sum(c - 1 for c in sizes.values() if c > 1)
    dd = datasets.DatasetDict()
    for split in SPLITS:
        rows = [r for r, s in zip(records, splits) if s == split]
        cols = {k: [r[k] for r in rows] for k in FEATURES}
        dd[split] = datasets.Dataset.from_dict(cols, features=FEATURES, split=split)
    log.info("loaded %s: kept %d, skipped %d", report.source, report.kept, len(report.skipped))
    return (dd, report) if return_report else dd


def select_split(dd: datasets.DatasetDict, split: str) -> datasets.Dataset:
    """One split, or every image of the source with split='all'."""
    if split == "all":
        return datasets.concatenate_datasets([dd[s] for s in dd])
    if split not in dd:
        raise ValueError(f"unknown split {split!r}; choose from {list(dd)} or 'all'")
    return dd[split]


def summarize(dd: datasets.DatasetDict, report: LoadReport | None = None) -> dict:
    """Counts per split and the distributions by age band, gender and race."""
    out: dict = {"splits": {}, "total": 0}
    for split, ds in dd.items():
        ages, genders, races = ds["age"], ds["gender"], ds["race"]
        out["splits"][split] = {
            "n": len(ds),
            "age_band": dict(sorted(Counter(age_band(a) for a in ages).items(), key=lambda kv: int(kv[0].split("-")[0].rstrip("+")))),
            "gender": {GENDERS[g]: c for g, c in sorted(Counter(genders).items())},
            "race": {(RACES[r] if r >= 0 else "unknown"): c for r, c in sorted(Counter(races).items())},
            "mean_age": round(sum(ages) / max(len(ages), 1), 2),
        }
        out["total"] += len(ds)
    if report is not None:
        out["report"] = report.as_dict()
    return out
