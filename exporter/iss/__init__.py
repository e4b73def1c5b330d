"""The ISS client: one `requests.Session`, retries, auth modes, paging, block → plain rows (`Table`).

    client = IssClient(config.iss, stats)
    result = client.get_block("/iss/datashop/algopack/eq/tradestats/SBER.json",
                              {"from": "2026-11-25", "till": "2026-11-25"},
                              required_columns=("tradedate", "tradetime", "systime"))
    result.table      # a Table: lower-cased columns, the rows of every page (exporter/table.py)

No pandas here: a block is plain lists (`exporter.table.Table`), and `iter_pages` hands a
long paged read over page by page, so a whole day is never held at once.

Failures raise `IssError(reason, message)`; `reason` is the `reason` label of
`algopack_poll_errors_total`, one of ERROR_REASONS (the one list; state.py and the
collector import it):

- `http`: an HTTP status >= 400 that is none of the below, after the retries (5xx are
  retried `iss.retries` times with backoff; a 503's Retry-After up to 30 s is honoured).
- `timeout`: no complete answer — connect failure, connection refused or reset, DNS
  failure, or the whole-request deadline `iss.timeout_seconds` (connect + headers + body
  together: a trickling answer fails too) passed; retried like a 5xx. "ISS unreachable".
- `auth`: a real refusal: HTTP 401, a 403 that is not throttling, a non-JSON answer (ISS
  answers an HTML login page or the "available only to subscribers" page when it refuses),
  or the passport refused the login. In passport mode the client logs in again at most
  ONCE per refusal episode for the whole client (see "Passport" below).
- `parse`: invalid JSON, a missing block, a missing required column, rows that do not
  match the columns, an undecodable (e.g. broken gzip) body.
- `throttled`: ISS asks us to slow down — HTTP 429, or a 403 / non-JSON answer that says
  "Too Many Requests". Never a re-login. The whole client backs off (see below).
- `iss_error`: a JSON answer whose requested block has the single column ERROR_MESSAGE;
  the message carries ISS's own text (secrets masked, capped at 300 characters).
- `too_large`: the answer is larger than `iss.max_response_bytes` on the wire or after
  decompression (read as a stream in 64 KiB pieces, so memory stays bounded; a gzip bomb
  is cut off at the cap). The connection is closed.
- `redirect`: a redirect to another scheme, host or port (the target host is in the
  message and the log, never its query string), or more than 5 same-host redirects.
  Same-host redirects are followed.

Throttling back-off: every throttled answer sets one back-off moment shared by all pairs:
`Retry-After` (seconds or an HTTP date, at most 1 h) when ISS sends it, otherwise an
exponential back-off with jitter (5 s, 10 s, ... up to 300 s; reset by the next successful
answer). While it is in force a request is not sent at all and fails at once with
`throttled` — unless less than 1 s remains, then the request waits for it.

Passport: the MicexPassportCert value is sent per request, only to the base URL's scheme,
host and port (never with a redirect elsewhere). On an `auth` refusal the client logs in
again and retries once; concurrent refusals share that one login. If the fresh certificate
is refused as well, there is no other login until some request succeeds (the episode ends)
or REAUTH_COOLDOWN_SECONDS (5 min) pass. A refused login is not repeated for that cool-down
either; a login that got no answer or was throttled is tried again after 30 s.

Credentials: the Bearer key (apikey mode) and the passport cookie go only to the base URL's
origin; the passport's Basic auth only to the passport URL's origin. No message or log line
carries a secret: URLs are logged through `describe_url`, ISS texts through `mask_secrets`.

Connections: every request is registered with one watchdog thread per client (it ends after
5 s without requests), which shuts the socket down when the request's deadline passes (this also ends a header read that
trickles); a connection that failed or was cut is closed, never reused.

Layout: `errors` (reasons, `IssError`, secret-safe text), `blocks` (block → Table, cursors,
`PageStream`), `watch` (the deadline watchdog and watched connections), `transport` (retries,
throttling, redirects, the size cap), `passport` (login and re-login), `client` (`IssClient`).
"""

from __future__ import annotations

from .blocks import ISS_PAGE_ROWS, IssResult, PageStream, iss_error_text, parse_block, parse_cursor
from .client import DEFAULT_MAX_RESPONSE_BYTES, IssClient, IssStats
from .errors import (
    ERROR_REASONS,
    MAX_ERROR_TEXT,
    PASSPORT_COOKIE,
    IssError,
    describe_origin,
    describe_url,
    mask_secrets,
    parse_retry_after,
)
from .passport import LOGIN_RETRY_SECONDS, REAUTH_COOLDOWN_SECONDS
from .transport import (
    MAX_REDIRECTS,
    READ_CHUNK_BYTES,
    REDIRECT_STATUSES,
    RETRY_AFTER_MAX_SECONDS,
    RETRY_STATUSES,
    THROTTLE_BACKOFF_BASE_SECONDS,
    THROTTLE_BACKOFF_MAX_SECONDS,
    THROTTLE_RETRY_AFTER_MAX_SECONDS,
    THROTTLE_WAIT_BELOW_SECONDS,
)
from .watch import WATCHDOG_IDLE_SECONDS

__all__ = [
    "DEFAULT_MAX_RESPONSE_BYTES", "ERROR_REASONS", "ISS_PAGE_ROWS", "LOGIN_RETRY_SECONDS", "MAX_ERROR_TEXT",
    "MAX_REDIRECTS", "PASSPORT_COOKIE", "READ_CHUNK_BYTES", "REAUTH_COOLDOWN_SECONDS", "REDIRECT_STATUSES",
    "RETRY_AFTER_MAX_SECONDS", "RETRY_STATUSES", "THROTTLE_BACKOFF_BASE_SECONDS", "THROTTLE_BACKOFF_MAX_SECONDS",
    "THROTTLE_RETRY_AFTER_MAX_SECONDS", "THROTTLE_WAIT_BELOW_SECONDS", "WATCHDOG_IDLE_SECONDS",
    "IssClient", "IssError", "IssResult", "IssStats", "PageStream",
    "describe_origin", "describe_url", "iss_error_text", "mask_secrets", "parse_block", "parse_cursor",
    "parse_retry_after",
]
