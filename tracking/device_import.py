"""Parsing and validating device and organisation-unit CSV files before anything is written.

An import is all rows or none: every bad row is reported with its line number and reason, and
a file with any bad row writes nothing.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import TypeVar

from store.devices import KINDS, PROTOCOLS, DeviceRecord, OrgUnitRecord

DEVICE_COLUMNS = ("uid", "kind", "name", "plate", "org_unit", "protocol", "enabled")
UNIT_COLUMNS = ("code", "name", "parent")
_UID = re.compile(r"^[0-9A-Za-z_.:-]{1,64}$")
_TRUE = {"1", "true", "yes", "y"}
_FALSE = {"0", "false", "no", "n"}

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RowError:
    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


class CsvImportError(ValueError):
    def __init__(self, errors: list[RowError]) -> None:
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


def read_rows(text: str, allowed: tuple[str, ...], required: str, parse: Callable[[dict[str, str], int], T]) -> list[T]:
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    header = [h.strip() for h in reader.fieldnames or []]
    if required not in header:
        raise CsvImportError([RowError(1, f"the header must name a `{required}` column (got {header})")])
    unknown = [h for h in header if h not in allowed]
    if unknown:
        raise CsvImportError([RowError(1, f"unknown columns {unknown}; allowed: {list(allowed)}")])
    reader.fieldnames = header
    out: list[T] = []
    errors: list[RowError] = []
    for raw in reader:
        line = reader.line_num
        if None in raw:
            errors.append(RowError(line, "more fields than the header has columns"))
            continue
        row = {k: (v or "").strip() for k, v in raw.items()}
        if not any(row.values()):
            continue
        try:
            out.append(parse(row, line))
        except ValueError as e:
            errors.append(RowError(line, str(e)))
    if errors:
        raise CsvImportError(errors)
    return out


def parse_devices(text: str, known_units: Collection[str]) -> list[DeviceRecord]:
    seen: dict[str, int] = {}

    def parse(row: dict[str, str], line: int) -> DeviceRecord:
        uid = row.get("uid", "")
        if not _UID.match(uid):
            raise ValueError(f"uid {uid!r} must be 1-64 letters, digits or _ . : -")
        if uid in seen:
            raise ValueError(f"uid {uid!r} repeats line {seen[uid]}")
        seen[uid] = line
        kind = row.get("kind") or "other"
        if kind not in KINDS:
            raise ValueError(f"kind {kind!r} is not one of {', '.join(KINDS)}")
        protocol = row.get("protocol") or None
        if protocol is not None and protocol not in PROTOCOLS:
            raise ValueError(f"protocol {protocol!r} is not one of {', '.join(PROTOCOLS)}")
        unit = row.get("org_unit") or None
        if unit is not None and unit not in known_units:
            raise ValueError(f"organisation unit {unit!r} does not exist (import units first)")
        enabled_text = (row.get("enabled") or "true").lower()
        if enabled_text not in _TRUE | _FALSE:
            raise ValueError(f"enabled {enabled_text!r} must be true or false")
        return DeviceRecord(
            uid=uid,
            kind=kind,
            name=row.get("name", ""),
            plate=row.get("plate") or None,
            org_unit=unit,
            protocol=protocol,
            enabled=enabled_text in _TRUE,
        )

    return read_rows(text, DEVICE_COLUMNS, "uid", parse)


def parse_units(text: str, known_units: Collection[str]) -> list[OrgUnitRecord]:
    """Units in file order; a parent must exist already or come earlier in the file."""
    seen: dict[str, int] = {}

    def parse(row: dict[str, str], line: int) -> OrgUnitRecord:
        code = row.get("code", "")
        if not _UID.match(code):
            raise ValueError(f"code {code!r} must be 1-64 letters, digits or _ . : -")
        if code in seen:
            raise ValueError(f"code {code!r} repeats line {seen[code]}")
        name = row.get("name", "")
        if not name:
            raise ValueError("name is empty")
        parent = row.get("parent") or None
        if parent is not None and parent not in seen and parent not in known_units:
            raise ValueError(f"parent {parent!r} is neither an existing unit nor on an earlier line")
        if parent == code:
            raise ValueError("a unit cannot be its own parent")
        seen[code] = line
        return OrgUnitRecord(code=code, name=name, parent=parent)

    return read_rows(text, UNIT_COLUMNS, "code", parse)
