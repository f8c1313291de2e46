"""Theengs decoder's BLE test table (tests/BLE/test_ble.cpp) as JSON lines, data only.

The C++ test feeds each row of a ``test_*`` array to the decoder and compares the result
with the JSON string at the same index of the matching ``expected_*`` array. This reads
both arrays as text and writes one line per row: the advert fields the test sets (by
their Theengs names: ``servicedata``, ``servicedatauuid``, ``manufacturerdata``, ``name``,
``id`` = MAC), the expected JSON, the table and row.
Usage: ``theengs.py CHECKOUT COMMIT``.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

#: test array -> (expected array, the advert field each column after the first sets)
TABLES: dict[str, tuple[str, tuple[str, ...]]] = {
    "test_servicedata": ("expected_servicedata", ("servicedata",)),
    "test_mfgdata": ("expected_mfg", ("name", "manufacturerdata")),
    "test_uuid_name_svcdata": (
        "expected_uuid_name_svcdata",
        ("servicedatauuid", "name", "servicedata"),
    ),
    "test_mac_mfgsvcdata": ("expected_mac_mfgsvcdata", ("id", "manufacturerdata", "servicedata")),
    "test_name_uuid_mfgsvcdata": (
        "expected_name_uuid_mfgsvcdata",
        ("name", "servicedatauuid", "manufacturerdata", "servicedata"),
    ),
    "test_name_mac_uuid_mfgsvcdata": (
        "expected_name_mac_uuid_mfgsvcdata",
        ("id", "name", "servicedatauuid", "manufacturerdata", "servicedata"),
    ),
    "test_uuid": ("expected_uuid", ("servicedatauuid", "kind", "data")),
    "test_mac_mfgdata": ("expected_mac_mfg", ("id", "manufacturerdata")),
}

_LITERAL = re.compile(r'"((?:[^"\\]|\\.)*)"')


def _array(text: str, name: str) -> str:
    start = re.search(rf"\b{name}\b[^=]*=\s*{{", text)
    if start is None:
        raise LookupError(name)
    depth, i = 1, start.end()
    while depth:
        ch = text[i]
        if ch == '"':
            i = _LITERAL.match(text, i).end()  # type: ignore[union-attr]
            continue
        depth += {"{": 1, "}": -1}.get(ch, 0)
        i += 1
    return text[start.end() : i - 1]


def _strings(body: str) -> list[str]:
    body = re.sub(r"//[^\n]*", "", body)
    return [json.loads(f'"{m.group(1)}"') for m in _LITERAL.finditer(body)]


def _rows(body: str) -> list[list[str]]:
    body = re.sub(r"//[^\n]*", "", body)
    return [
        _strings(m.group(1)) for m in re.finditer(r"{((?:[^{}\"]|\"(?:[^\"\\]|\\.)*\")*)}", body)
    ]


def main(checkout: str, commit: str) -> int:
    path = Path(checkout) / "tests" / "BLE" / "test_ble.cpp"
    text = path.read_text(encoding="utf-8")
    for table, (expected_name, columns) in TABLES.items():
        rows = _rows(_array(text, table))
        expected = _strings(_array(text, expected_name))
        if len(rows) != len(expected):
            raise SystemExit(f"{table}: {len(rows)} rows but {len(expected)} expectations")
        for index, (row, want) in enumerate(zip(rows, expected, strict=True)):
            line = {
                "source": f"theengs/decoder@{commit}:tests/BLE/test_ble.cpp:{table}[{index}]",
                "table": table,
                "row": index,
                "label": row[0],
                "advert": dict(zip(columns, row[1:], strict=True)),
                "expected": json.loads(want),
            }
            print(json.dumps(line, sort_keys=True, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
