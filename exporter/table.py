"""One ISS block's rows as plain data: lower-cased column names + one list per row.

    table = Table(("tradetime", "secid"), [["10:05:00", "SBER"], ["10:05:00", "GAZP"]])
    len(table)             # 2
    table["secid"]         # ["SBER", "GAZP"]  (a column as a list)
    "secid" in table       # True
    table.records()        # [{"tradetime": "10:05:00", "secid": "SBER"}, ...]

The exporter handles a handful of rows per poll (and streams whole days page by page), so
it needs no DataFrame: this keeps pandas/numpy out of the exporter process.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any


class Table:
    """Rows of one block in the order ISS sent them; `columns` are unique and lower-case."""

    __slots__ = ("__weakref__", "_index", "columns", "rows")

    def __init__(self, columns: Iterable[str], rows: list[Sequence[Any]] | None = None):
        self.columns: tuple[str, ...] = tuple(columns)
        self.rows: list[Sequence[Any]] = rows if rows is not None else []
        self._index = {name: i for i, name in enumerate(self.columns)}

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[Sequence[Any]]:
        return iter(self.rows)

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def __getitem__(self, name: str) -> list[Any]:
        """The column `name` as a list (KeyError when absent)."""
        index = self._index[name]
        return [row[index] for row in self.rows]

    def __repr__(self) -> str:
        return f"Table(columns={self.columns!r}, rows={len(self.rows)})"

    @property
    def empty(self) -> bool:
        return not self.rows

    def get(self, name: str) -> list[Any] | None:
        """The column as a list, None when the block has no such column."""
        return self[name] if name in self._index else None

    def values(self, *names: str) -> Iterator[tuple[Any, ...]]:
        """Rows as tuples of the named columns (a missing column gives None)."""
        indices = [self._index.get(name) for name in names]
        if all(i is not None for i in indices):
            if len(indices) == 1:
                only = indices[0]
                return ((row[only],) for row in self.rows)
            return (tuple(row[i] for i in indices) for row in self.rows)  # type: ignore[index]
        return (tuple(None if i is None else row[i] for i in indices) for row in self.rows)

    def records(self) -> list[dict[str, Any]]:
        """One dict per row (column → value)."""
        names = self.columns
        return [dict(zip(names, row, strict=True)) for row in self.rows]

    def select(self, names: Iterable[str]) -> Table:
        """Only the named columns that exist, in the given order."""
        keep = [name for name in names if name in self._index]
        if tuple(keep) == self.columns:
            return self
        indices = [self._index[name] for name in keep]
        return Table(keep, [[row[i] for i in indices] for row in self.rows])

    def extend(self, other: Table) -> None:
        """Append another page's rows (same columns; an other layout is re-ordered by name)."""
        if other.columns == self.columns:
            self.rows.extend(other.rows)
            return
        indices = [other._index.get(name) for name in self.columns]
        self.rows.extend([None if i is None else row[i] for i in indices] for row in other.rows)
