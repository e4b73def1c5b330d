"""ISS JSON blocks → `Table`, cursors, and the page-by-page read of one block (`PageStream`)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from exporter.table import Table

from .errors import IssError, describe_url, mask_secrets

log = logging.getLogger("exporter.iss")  # one logger for the whole client

ISS_PAGE_ROWS = 1000  # an answer without a cursor is capped at this many rows (FUTOI)


@dataclass(frozen=True)
class IssResult:
    table: Table  # every page's rows, lower-cased columns
    total: int | None  # TOTAL from the cursor block, when the server sent one
    pages: int
    bytes: int
    status: int  # HTTP status of the last page
    # stopped by max_pages before the last page, or an answer without a cursor that has
    # ISS_PAGE_ROWS rows (ISS's cap: there may be more rows than one answer can carry)
    truncated: bool = False


def _lower_columns(columns: Iterable[Any], block: str) -> list[str]:
    names = [str(name).lower() for name in columns]
    if len(set(names)) != len(names):
        raise IssError("parse", f"block {block!r} has duplicate column names")
    return names


def _missing(names: Iterable[str], required: Iterable[str]) -> list[str]:
    """The `required` columns (any case) not among the lower-cased `names`."""
    present = set(names)
    return [name for name in (c.lower() for c in required) if name not in present]


def iss_error_text(payload: Any, block: str) -> str | None:
    """ISS's own error text when the answer is an ERROR_MESSAGE answer, else None.

    Such an answer is JSON whose requested block has the single column ERROR_MESSAGE (iss-api
    §11, "refusals"); when the requested block is absent, any block of that shape counts."""
    if not isinstance(payload, Mapping):
        return None

    def text_of(candidate: Any) -> str | None:
        if not isinstance(candidate, Mapping):
            return None
        columns = candidate.get("columns")
        if not (isinstance(columns, list) and len(columns) == 1 and str(columns[0]).upper() == "ERROR_MESSAGE"):
            return None
        rows = candidate.get("data")
        texts = [str(row[0]) for row in rows if isinstance(row, list) and row and row[0] is not None] \
            if isinstance(rows, list) else []
        return "; ".join(texts) or "(no text)"

    found = text_of(payload.get(block))
    if found is None and not isinstance(payload.get(block), Mapping):
        for candidate in payload.values():
            found = text_of(candidate)
            if found is not None:
                break
    return found


def parse_block(payload: Mapping[str, Any], block: str, required_columns: Iterable[str] = ()) -> Table:
    """One ISS JSON block → Table with lower-cased column names (pure; no I/O).

    Raises IssError("iss_error") for an ERROR_MESSAGE answer (ISS's text, masked and capped),
    IssError("parse") when the block is missing or malformed, a required column (compared
    case-insensitively) is absent, or a row does not match the columns."""
    if not isinstance(payload, Mapping):
        raise IssError("parse", "ISS answer is not a JSON object")
    error_text = iss_error_text(payload, block)
    if error_text is not None:
        raise IssError("iss_error", f"ISS: {mask_secrets(error_text)}")
    data_block = payload.get(block)
    if not isinstance(data_block, Mapping):
        raise IssError("parse", f"block {block!r} missing from ISS answer")
    columns = data_block.get("columns")
    rows = data_block.get("data")
    if not isinstance(columns, list) or not isinstance(rows, list):
        raise IssError("parse", f"block {block!r} lacks columns/data lists")
    names = _lower_columns(columns, block)
    missing = _missing(names, required_columns)
    if missing:
        raise IssError("parse", f"block {block!r} lacks required column(s): {', '.join(missing)}")
    for index, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != len(names):
            raise IssError("parse", f"block {block!r} row {index} does not match its {len(names)} columns")
    return Table(names, rows)


def _lacks(payload: Any, block: str, required: tuple[str, ...]) -> bool:
    """The block is there with a column list that lacks one of `required` (case-insensitive)."""
    data_block = payload.get(block) if isinstance(payload, Mapping) else None
    columns = data_block.get("columns") if isinstance(data_block, Mapping) else None
    if not isinstance(columns, list):
        return False
    return bool(_missing((str(name).lower() for name in columns), required))


def parse_cursor(payload: Mapping[str, Any], block: str) -> dict[str, int] | None:
    """`<block>.cursor` → {"index", "total", "pagesize"}, or None when absent."""
    cursor = payload.get(f"{block}.cursor") if isinstance(payload, Mapping) else None
    if cursor is None:
        return None
    try:
        table = parse_block(payload, f"{block}.cursor", ("index", "total", "pagesize"))
        if table.empty:
            return None
        row = table.records()[0]
        return {key: int(row[key]) for key in ("index", "total", "pagesize")}
    except (TypeError, ValueError) as exc:
        raise IssError("parse", f"block '{block}.cursor' has non-integer values") from exc


class PageSource(Protocol):
    """What a `PageStream` needs of its client (`IssClient`)."""

    def _get_json(self, path: str, params: Mapping[str, Any]) -> tuple[Any, int, int]: ...

    def _secrets(self) -> tuple[str | None, ...]: ...

    def _log_truncation_once(self, path: str, rows: int) -> None: ...

    def _trimming_refused(self, path: str) -> bool: ...

    def _refuse_trimming(self, path: str) -> None: ...


class PageStream:
    """The pages of one block read (`IssClient.iter_pages`): iterate for one Table per page.

    A page is requested only when the previous one has been consumed, so a consumer that
    aggregates page by page holds one page at a time (a whole day of obstats is ~40
    pages at scale 1). Iterate once; the counters describe what has been read so far."""

    def __init__(self, client: PageSource, path: str, params: Mapping[str, Any] | None, block: str,
                 required_columns: Iterable[str], all_pages: bool, start: int, max_pages: int,
                 columns: Iterable[str] | None):
        self.client = client
        self.path = path
        self.block = block
        self.required = tuple(c.lower() for c in required_columns)
        wanted = [c.lower() for c in columns] if columns else None
        self.keep = list(dict.fromkeys([*wanted, *self.required])) if wanted else None
        self.params: dict[str, Any] = dict(params or {})
        self.params["iss.meta"] = "off"
        self.params["iss.only"] = f"{block},{block}.cursor"
        self.trimmed = bool(self.keep) and not client._trimming_refused(path)
        if self.trimmed:
            self.params[f"{block}.columns"] = ",".join(self.keep)
        self.all_pages = all_pages
        self.start = start
        self.max_pages = max_pages
        self.total: int | None = None
        self.pages = self.bytes = self.status = 0
        self.rows = 0
        self.truncated = False

    def __iter__(self) -> Iterator[Table]:
        client, path, block = self.client, self.path, self.block
        offset = self.start
        while True:
            page_params = {**self.params, "start": offset}
            payload, self.status, size = client._get_json(path, page_params)
            self.bytes += size
            self.pages += 1
            error_text = iss_error_text(payload, block)
            if error_text is not None:
                shown = mask_secrets(error_text, client._secrets())
                log.warning("iss_error_message path=%s text=%s", describe_url(path, page_params), shown)
                raise IssError("iss_error", f"GET {describe_url(path)}: ISS: {shown}", self.status)
            if self.trimmed and _lacks(payload, block, self.required):
                # ISS trimmed away a column we need (e.g. it matched `systime` against
                # `SYSTIME` case-sensitively): ask again without trimming, and never trim
                # this path again (the table is still trimmed here, client-side).
                client._refuse_trimming(path)
                self.trimmed = False
                del self.params[f"{block}.columns"]
                log.warning("iss_columns_refused path=%s: the answer lacked a required column with %s.columns;"
                            " asking for every column from now on", describe_url(path), block)
                continue
            table = parse_block(payload, block, self.required)
            cursor = parse_cursor(payload, block)
            del payload
            rows = len(table)
            offset += rows
            self.rows += rows
            last = True
            if cursor is None:
                if rows >= ISS_PAGE_ROWS:
                    self.truncated = True
                    client._log_truncation_once(path, rows)
            else:
                self.total, page_size = cursor["total"], cursor["pagesize"] or None
                last = (not self.all_pages or rows == 0 or (page_size is not None and rows < page_size)
                        or offset >= self.total)
                if not last and self.pages >= self.max_pages:
                    self.truncated = True
                    last = True
                    log.warning("iss_paging_truncated path=%s pages=%d rows=%d", describe_url(path), self.pages,
                                offset - self.start)
            page = table.select(self.keep) if self.keep else table
            del table
            yield page
            del page  # the consumer has it: no page is held here while the next one is read
            if last:
                return
