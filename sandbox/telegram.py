"""Fake Telegram Bot API server for tests, the demo and benchmarks.

    python -m sandbox.telegram --listen 127.0.0.1:PORT [--log FILE.jsonl]

or in-process:

    with FakeTelegram() as tg:                      # port 0: a free loopback port
        app = Application.builder().token(T).base_url(tg.url + "/bot").build()
        tg.inject_text("/calendar", chat_id=-100123, user_id=42)
        record = tg.wait_for(lambda m: m["method"] == "sendMessage", timeout=5)

Bot API routes `/bot<TOKEN>/<method>` accept GET or POST with query string,
form-encoded (Alertmanager; python-telegram-bot sends JSON-encoded values in form fields),
JSON or multipart bodies, and answer with the Bot API envelope
`{"ok": true, "result": ...}` / `{"ok": false, "error_code": N, "description": ...}`.
State is kept per bot (the numeric prefix of the token); the token itself is never logged
or stored. The control API (plain JSON, no auth) lives under `/_control/`; see
`sandbox/README_telegram.md`.
"""

from __future__ import annotations

import argparse
import email.parser
import email.policy
import hashlib
import html.parser
import itertools
import json
import logging
import re
import signal
import struct
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

log = logging.getLogger("sandbox.telegram")

TEXT_LIMIT = 4096
CAPTION_LIMIT = 1024
MAX_POLL_TIMEOUT = 50.0
UPDATE_TYPES = ("message", "edited_message", "channel_post", "callback_query", "inline_query",
                "my_chat_member", "chat_member")

# Form/multipart values are strings; these keys carry JSON (python-telegram-bot JSON-encodes
# every non-string parameter) or integers/booleans (Alertmanager sends plain form fields).
_INT_KEYS = {"chat_id", "message_id", "offset", "limit", "timeout", "reply_to_message_id", "cache_time",
             "user_id", "from_chat_id", "message_thread_id"}
_BOOL_KEYS = {"disable_web_page_preview", "disable_notification", "show_alert", "drop_pending_updates",
              "protect_content", "allow_sending_without_reply"}
_JSON_KEYS = {"reply_markup", "allowed_updates", "commands", "entities", "caption_entities",
              "reply_parameters", "link_preview_options", "scope"}
# Tags Telegram accepts in parse_mode=HTML (anything else is "can't parse entities").
_HTML_TAGS = {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "a", "code", "pre", "span",
              "tg-spoiler", "tg-emoji", "blockquote"}


class ApiError(Exception):
    """An error answer of the Bot API."""

    def __init__(self, code: int, description: str, retry_after: int | None = None):
        super().__init__(description)
        self.code = code
        self.description = description
        self.retry_after = retry_after

    def envelope(self) -> dict[str, Any]:
        body: dict[str, Any] = {"ok": False, "error_code": self.code, "description": self.description}
        if self.retry_after is not None:
            body["parameters"] = {"retry_after": self.retry_after}
        return body


class _HtmlChecker(html.parser.HTMLParser):
    """Rejects what Telegram rejects in HTML mode: unknown tags, unbalanced tags."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.plain: list[str] = []
        self.error: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _HTML_TAGS and self.error is None:
            self.error = f'Unsupported start tag "{tag}"'
        self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if (not self.stack or self.stack[-1] != tag) and self.error is None:
            self.error = f'Unexpected end tag "{tag}"'
        elif self.stack:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.plain.append(data)


def html_to_plain(text: str) -> str:
    """Plain text of an HTML-mode message, or ApiError(400) the way Telegram reports bad markup."""
    checker = _HtmlChecker()
    checker.feed(text)
    checker.close()
    if checker.error is None and checker.stack:
        checker.error = f'Can\'t find end tag corresponding to start tag "{checker.stack[-1]}"'
    if checker.error is None and re.search(r"<(?![a-zA-Z/])", text):
        checker.error = "Unsupported start tag \"\""
    if checker.error:
        raise ApiError(400, f"Bad Request: can't parse entities: {checker.error}")
    return "".join(checker.plain)


def _png_size(data: bytes) -> tuple[int, int]:
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return struct.unpack(">II", data[16:24])
    return (0, 0)


def _coerce(key: str, value: Any) -> Any:
    if not isinstance(value, str):
        return value
    if key in _INT_KEYS:
        try:
            return int(value)
        except ValueError:
            return value  # "@channelname"
    if key in _BOOL_KEYS:
        return value.strip().lower() in ("1", "true", "yes")
    if key in _JSON_KEYS:
        try:
            return json.loads(value)
        except ValueError as exc:
            raise ApiError(400, f"Bad Request: can't parse {key} JSON object") from exc
    if key in ("text", "caption"):
        return value
    return value


def parse_body(content_type: str, body: bytes, query: str) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Parameters (typed) and uploaded files of one request."""
    params: dict[str, Any] = dict(parse_qsl(query, keep_blank_values=True))
    files: dict[str, bytes] = {}
    ctype = (content_type or "").split(";")[0].strip().lower()
    if body:
        if ctype == "application/json":
            try:
                decoded = json.loads(body)
            except ValueError as exc:
                raise ApiError(400, "Bad Request: can't parse JSON") from exc
            if not isinstance(decoded, dict):
                raise ApiError(400, "Bad Request: JSON body must be an object")
            params.update(decoded)
        elif ctype == "multipart/form-data":
            head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
            message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
            for part in message.iter_parts():
                name = part.get_param("name", header="content-disposition")
                if not name:
                    continue
                payload = part.get_payload(decode=True) or b""
                if part.get_filename() is not None:
                    files[name] = payload
                else:
                    params[name] = payload.decode("utf-8")
        else:
            params.update(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
    typed = {key: _coerce(key, value) for key, value in params.items()}
    # multipart files may also be referenced as attach://name
    for key, value in list(typed.items()):
        if isinstance(value, str) and value.startswith("attach://") and value[9:] in files:
            files[key] = files[value[9:]]
    return typed, files


class FakeTelegram:
    """The fake Bot API: state, Bot API methods, control helpers and the HTTP server."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, log_path: str | None = None):
        self.host = host
        self.port = port
        self.log_path = log_path
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._log_file = None
        self._reset_state()

    # ----------------------------------------------------------------- state

    def _reset_state(self) -> None:
        with self._lock:
            self._update_seq = itertools.count(1)
            self._updates: list[dict[str, Any]] = []   # {"update_id", "target", "update"}
            self._confirmed: dict[int, int] = {}       # bot id -> first unconfirmed update_id
            self._allowed: dict[int, list[str] | None] = {}
            self._commands: dict[int, list[dict[str, Any]]] = {}
            self._message_seq: dict[int, itertools.count] = {}
            self._stored: dict[tuple[int, int], dict[str, Any]] = {}   # (chat, message_id) -> message
            self._records: list[dict[str, Any]] = []
            self._callback_answers: list[dict[str, Any]] = []
            self._chats: dict[int, dict[str, Any]] = {}
            self._files: dict[str, bytes] = {}
            self._faults: list[dict[str, Any]] = []
            self._down = False
            self._revoked: set[int] = set()           # bot ids whose token was revoked (401)
            self._requests: dict[str, int] = {}
            self._waiting_polls = 0                   # getUpdates calls blocked in their long poll now
            self._callback_seq = itertools.count(1)
            self._cond.notify_all()

    def reset(self) -> None:
        self._reset_state()

    # ------------------------------------------------------------- lifecycle

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeTelegram is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeTelegram:
        if self.log_path:
            self._log_file = open(self.log_path, "a", encoding="utf-8")  # noqa: SIM115 - closed in stop()
        self._stopping = False
        self._server = ThreadingHTTPServer((self.host, self.port), _make_handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-telegram", daemon=True)
        self._thread.start()
        log.info("fake telegram listening url=%s", self.url)
        return self

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __enter__(self) -> FakeTelegram:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --------------------------------------------------------------- helpers

    @staticmethod
    def bot_id(token: str) -> int:
        prefix, sep, secret = token.partition(":")
        if not sep or not prefix.isdigit() or not secret:
            raise ApiError(401, "Unauthorized")
        return int(prefix)

    def bot_user(self, bot_id: int) -> dict[str, Any]:
        return {"id": bot_id, "is_bot": True, "first_name": "Fake Bot", "username": f"fake{bot_id}_bot",
                "can_join_groups": True, "can_read_all_group_messages": False,
                "supports_inline_queries": False}

    @staticmethod
    def user(user_id: int) -> dict[str, Any]:
        return {"id": user_id, "is_bot": False, "first_name": f"User{user_id}", "username": f"user{user_id}",
                "language_code": "ru"}

    def chat(self, chat_id: int, chat_type: str | None = None) -> dict[str, Any]:
        with self._lock:
            known = self._chats.get(chat_id)
            if known is not None and (chat_type is None or known["type"] == chat_type):
                return dict(known)
            if chat_type is None:
                chat_type = "private" if chat_id > 0 else ("supergroup" if str(chat_id).startswith("-100")
                                                           else "group")
            chat: dict[str, Any] = {"id": chat_id, "type": chat_type}
            if chat_type == "private":
                chat["first_name"] = f"User{chat_id}"
            else:
                chat["title"] = f"Test {chat_type} {chat_id}"
            self._chats[chat_id] = chat
            return dict(chat)

    def _next_message_id(self, chat_id: int) -> int:
        return next(self._message_seq.setdefault(chat_id, itertools.count(1)))

    def _record(self, bot_id: int | None, method: str, message: dict[str, Any], raw_text: str | None,
                params: dict[str, Any], **extra: Any) -> None:
        record = {
            "ts": time.time(), "bot_id": bot_id, "method": method,
            "chat_id": message["chat"]["id"], "message_id": message["message_id"],
            "text": raw_text, "parse_mode": params.get("parse_mode"),
            "reply_markup": message.get("reply_markup"),
            "photo_sha256": None,
        }
        for key in ("disable_web_page_preview",):
            if key in params:
                record[key] = params[key]
        record.update(extra)
        self._records.append(record)
        if self._log_file is not None:
            self._log_file.write(json.dumps(record, ensure_ascii=False) + "\n")
            self._log_file.flush()
        self._cond.notify_all()

    # -------------------------------------------------------- control helpers

    def messages(self, chat_id: int | None = None, since: int = 0) -> list[dict[str, Any]]:
        """Records of every sent/edited/deleted message, oldest first."""
        with self._lock:
            return [dict(r) for r in self._records[since:] if chat_id is None or r["chat_id"] == chat_id]

    def callback_answers(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(a) for a in self._callback_answers]

    def requests_count(self) -> dict[str, int]:
        with self._lock:
            return dict(self._requests)

    def waiting_polls(self) -> int:
        """getUpdates calls blocked in their long poll right now (a test's positive event:
        "the bot is waiting", instead of a sleep)."""
        with self._lock:
            return self._waiting_polls

    def file_bytes(self, sha256: str) -> bytes | None:
        with self._lock:
            return self._files.get(sha256)

    def stored_message(self, chat_id: int, message_id: int) -> dict[str, Any] | None:
        with self._lock:
            message = self._stored.get((chat_id, message_id))
            return json.loads(json.dumps(message)) if message else None

    def wait_for(self, predicate: Callable[[dict[str, Any]], Any], timeout: float = 10.0,
                 since: int = 0) -> dict[str, Any]:
        """The first record (index >= since) for which predicate is truthy; TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for record in self._records[since:]:
                    if predicate(record):
                        return dict(record)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no matching Telegram message within {timeout}s; "
                                       f"last: {self._records[-3:]}")
                self._cond.wait(remaining)

    def inject_update(self, update: dict[str, Any], token_id: int | None = None) -> dict[str, Any]:
        """Queue an update (without update_id) for one bot or, token_id None, for every bot."""
        with self._cond:
            update_id = next(self._update_seq)
            full = {"update_id": update_id, **update}
            self._updates.append({"update_id": update_id, "target": token_id, "update": full})
            self._cond.notify_all()
            return full

    def inject_text(self, text: str, chat_id: int, user_id: int, chat_type: str | None = None,
                    token_id: int | None = None) -> dict[str, Any]:
        """A user's text message; a leading /command gets its bot_command entity, as Telegram does."""
        with self._lock:
            message: dict[str, Any] = {
                "message_id": self._next_message_id(chat_id), "date": int(time.time()),
                "chat": self.chat(chat_id, chat_type), "from": self.user(user_id), "text": text,
            }
            command = re.match(r"/[A-Za-z0-9_]+(@[A-Za-z0-9_]+)?", text)
            if command:
                message["entities"] = [{"type": "bot_command", "offset": 0, "length": command.end()}]
            self._stored[(chat_id, message["message_id"])] = message
            return self.inject_update({"message": message}, token_id)

    def inject_callback(self, callback_data: str, chat_id: int, user_id: int, message_id: int,
                        token_id: int | None = None) -> dict[str, Any]:
        """A press on an inline button of message (chat_id, message_id)."""
        with self._lock:
            message = self._stored.get((chat_id, message_id))
            if message is None:
                # A button on a message we never saw: Telegram would still deliver it.
                message = {"message_id": message_id, "date": int(time.time()), "chat": self.chat(chat_id),
                           "text": "?"}
            query = {
                "id": str(next(self._callback_seq)), "from": self.user(user_id),
                "message": json.loads(json.dumps(message)), "chat_instance": str(abs(chat_id)),
                "data": callback_data,
            }
            return self.inject_update({"callback_query": query}, token_id)

    def add_fault(self, method: str | None = None, status: int = 500, retry_after: int | None = None,
                  count: int | None = None) -> None:
        with self._lock:
            self._faults.append({"method": method, "status": status, "retry_after": retry_after,
                                 "count": count})

    def set_down(self, down: bool = True) -> None:
        with self._lock:
            self._down = down

    def revoke(self, bot_id: int) -> None:
        """Every call with this bot's token answers 401 Unauthorized, as after a token is revoked."""
        with self._lock:
            self._revoked.add(int(bot_id))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
            self._down = False
            self._revoked.clear()

    def _check_fault(self, method: str) -> None:
        with self._lock:
            for fault in self._faults:
                if fault["method"] not in (None, "*", method):
                    continue
                if fault["count"] is not None:
                    if fault["count"] <= 0:
                        continue
                    fault["count"] -= 1
                status = int(fault["status"])
                if status == 429:
                    retry = int(fault["retry_after"] or 1)
                    raise ApiError(429, f"Too Many Requests: retry after {retry}", retry_after=retry)
                description = {500: "Internal Server Error", 502: "Bad Gateway",
                               503: "Service Unavailable"}.get(status, HTTPStatus(status).phrase)
                raise ApiError(status, description)

    # ------------------------------------------------------------ Bot API

    def call(self, token: str, method: str, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        bot_id = self.bot_id(token)
        with self._lock:
            self._requests[method] = self._requests.get(method, 0) + 1
            if bot_id in self._revoked:
                raise ApiError(401, "Unauthorized")
        self._check_fault(method)
        handler = getattr(self, f"_m_{method.lower()}", None)
        if handler is None:
            raise ApiError(404, "Not Found")
        return handler(bot_id, params, files)

    @staticmethod
    def _require(params: dict[str, Any], *keys: str) -> None:
        for key in keys:
            if params.get(key) in (None, ""):
                raise ApiError(400, f"Bad Request: {key} is empty" if key != "chat_id"
                               else "Bad Request: chat not found")

    def _check_text(self, text: str, parse_mode: str | None, limit: int, what: str) -> str:
        plain = html_to_plain(text) if (parse_mode or "").upper() == "HTML" else text
        if not plain.strip() and what == "message":
            raise ApiError(400, "Bad Request: message text is empty")
        if len(plain.encode("utf-16-le")) // 2 > limit:
            raise ApiError(400, f"Bad Request: {what} is too long")
        return plain

    def _chat_id(self, params: dict[str, Any]) -> int:
        self._require(params, "chat_id")
        chat_id = params["chat_id"]
        if not isinstance(chat_id, int):
            raise ApiError(400, "Bad Request: chat not found")
        return chat_id

    def _new_message(self, bot_id: int, chat_id: int, params: dict[str, Any]) -> dict[str, Any]:
        message: dict[str, Any] = {"message_id": self._next_message_id(chat_id), "date": int(time.time()),
                                   "chat": self.chat(chat_id), "from": self.bot_user(bot_id)}
        if params.get("reply_markup"):
            message["reply_markup"] = params["reply_markup"]
        return message

    def _m_getme(self, bot_id: int, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        return self.bot_user(bot_id)

    def _m_logout(self, bot_id: int, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        return True

    _m_close = _m_logout

    def _m_deletewebhook(self, bot_id: int, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        if params.get("drop_pending_updates"):
            with self._lock:
                pending = [u["update_id"] for u in self._updates if u["target"] in (None, bot_id)]
                if pending:
                    self._confirmed[bot_id] = max(self._confirmed.get(bot_id, 0), max(pending) + 1)
        return True

    def _m_setwebhook(self, bot_id: int, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        raise ApiError(400, "Bad Request: webhooks are not supported by the fake server")

    def _m_getwebhookinfo(self, bot_id: int, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        return {"url": "", "has_custom_certificate": False, "pending_update_count": 0}

    def _m_setmycommands(self, bot_id: int, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        commands = params.get("commands")
        if not isinstance(commands, list):
            raise ApiError(400, "Bad Request: can't parse commands JSON object")
        for command in commands:
            if not isinstance(command, dict) or not re.fullmatch(r"[a-z0-9_]{1,32}", str(command.get("command"))) \
                    or not 1 <= len(str(command.get("description", ""))) <= 256:
                raise ApiError(400, "Bad Request: BOT_COMMAND_INVALID")
        with self._lock:
            self._commands[bot_id] = [{"command": c["command"], "description": c["description"]}
                                      for c in commands]
        return True

    def _m_getmycommands(self, bot_id: int, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        with self._lock:
            return list(self._commands.get(bot_id, []))

    def _m_deletemycommands(self, bot_id: int, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        with self._lock:
            self._commands.pop(bot_id, None)
        return True

    def _m_getupdates(self, bot_id: int, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        offset = int(params.get("offset") or 0)
        limit = max(1, min(100, int(params.get("limit") or 100)))
        timeout = min(MAX_POLL_TIMEOUT, max(0.0, float(params.get("timeout") or 0)))
        deadline = time.monotonic() + timeout
        with self._cond:
            if "allowed_updates" in params and params["allowed_updates"] is not None:
                # Like Telegram: the list is remembered; [] means "all except chat_member".
                self._allowed[bot_id] = list(params["allowed_updates"]) or None
            allowed = self._allowed.get(bot_id)
            mine = [u for u in self._updates if u["target"] in (None, bot_id)]
            if offset > 0:
                self._confirmed[bot_id] = max(self._confirmed.get(bot_id, 0), offset)
            elif offset < 0 and mine:
                keep = mine[offset:]
                self._confirmed[bot_id] = max(self._confirmed.get(bot_id, 0), keep[0]["update_id"])
            while True:
                first = self._confirmed.get(bot_id, 0)
                ready = [u["update"] for u in self._updates
                         if u["target"] in (None, bot_id) and u["update_id"] >= first
                         and (allowed is None or any(k in u["update"] for k in allowed))]
                if ready or self._stopping:
                    return ready[:limit]
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return []
                self._waiting_polls += 1
                try:
                    self._cond.wait(remaining)
                finally:
                    self._waiting_polls -= 1

    def _m_sendmessage(self, bot_id: int, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        chat_id = self._chat_id(params)
        text = params.get("text")
        if not isinstance(text, str) or not text:
            raise ApiError(400, "Bad Request: message text is empty")
        plain = self._check_text(text, params.get("parse_mode"), TEXT_LIMIT, "message")
        with self._lock:
            message = self._new_message(bot_id, chat_id, params)
            message["text"] = plain
            self._stored[(chat_id, message["message_id"])] = {**message, "_raw": text}
            self._record(bot_id, "sendMessage", message, text, params)
            return message

    def _find_own(self, bot_id: int, params: dict[str, Any], what: str) -> dict[str, Any]:
        chat_id = self._chat_id(params)
        message_id = params.get("message_id")
        stored = self._stored.get((chat_id, message_id)) if isinstance(message_id, int) else None
        if stored is None:
            raise ApiError(400, f"Bad Request: message to {what} not found")
        if stored.get("from", {}).get("id") != bot_id and what != "delete":
            raise ApiError(400, f"Bad Request: message can't be {what}ed")
        return stored

    def _m_editmessagetext(self, bot_id: int, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        if params.get("inline_message_id"):
            raise ApiError(400, "Bad Request: inline messages are not supported by the fake server")
        text = params.get("text")
        if not isinstance(text, str) or not text:
            raise ApiError(400, "Bad Request: message text is empty")
        plain = self._check_text(text, params.get("parse_mode"), TEXT_LIMIT, "message")
        with self._lock:
            stored = self._find_own(bot_id, params, "edit")
            if "text" not in stored:
                raise ApiError(400, "Bad Request: there is no text in the message to edit")
            new_markup = params.get("reply_markup") or None
            if stored.get("_raw") == text and stored.get("reply_markup") == new_markup:
                raise ApiError(400, "Bad Request: message is not modified: specified new message content "
                                    "and reply markup are exactly the same as a current content and reply "
                                    "markup of the message")
            stored["_raw"] = text
            stored["text"] = plain
            stored["edit_date"] = int(time.time())
            if new_markup:
                stored["reply_markup"] = new_markup
            else:
                stored.pop("reply_markup", None)
            result = {k: v for k, v in stored.items() if not k.startswith("_")}
            self._record(bot_id, "editMessageText", result, text, params)
            return json.loads(json.dumps(result))

    def _m_editmessagereplymarkup(self, bot_id: int, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        with self._lock:
            stored = self._find_own(bot_id, params, "edit")
            new_markup = params.get("reply_markup") or None
            if stored.get("reply_markup") == new_markup:
                raise ApiError(400, "Bad Request: message is not modified: specified new message content "
                                    "and reply markup are exactly the same as a current content and reply "
                                    "markup of the message")
            if new_markup:
                stored["reply_markup"] = new_markup
            else:
                stored.pop("reply_markup", None)
            stored["edit_date"] = int(time.time())
            result = {k: v for k, v in stored.items() if not k.startswith("_")}
            self._record(bot_id, "editMessageReplyMarkup", result, stored.get("_raw"), params)
            return json.loads(json.dumps(result))

    def _m_deletemessage(self, bot_id: int, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        with self._lock:
            stored = self._find_own(bot_id, params, "delete")
            self._stored.pop((stored["chat"]["id"], stored["message_id"]), None)
            self._record(bot_id, "deleteMessage", stored, stored.get("_raw"), params)
            return True

    def _m_answercallbackquery(self, bot_id: int, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        self._require(params, "callback_query_id")
        text = params.get("text") or ""
        if len(text) > 200:
            raise ApiError(400, "Bad Request: MESSAGE_TOO_LONG")
        with self._cond:
            self._callback_answers.append({"ts": time.time(), "bot_id": bot_id,
                                           "callback_query_id": str(params["callback_query_id"]),
                                           "text": text, "show_alert": bool(params.get("show_alert"))})
            self._cond.notify_all()
        return True

    def _send_file(self, bot_id: int, params: dict[str, Any], files: dict[str, bytes], kind: str) -> Any:
        chat_id = self._chat_id(params)
        data = files.get(kind)
        if data is None:
            if isinstance(params.get(kind), str) and params[kind]:
                data = params[kind].encode()  # a file_id or URL: keep its bytes as identity
            else:
                raise ApiError(400, f"Bad Request: there is no {kind} in the request")
        caption = params.get("caption")
        if caption:
            caption_plain = self._check_text(caption, params.get("parse_mode"), CAPTION_LIMIT, "message caption")
        digest = hashlib.sha256(data).hexdigest()
        with self._lock:
            self._files[digest] = data
            message = self._new_message(bot_id, chat_id, params)
            file_info = {"file_id": f"{kind}-{digest[:32]}", "file_unique_id": digest[:16], "file_size": len(data)}
            if kind == "photo":
                width, height = _png_size(data)
                message["photo"] = [{**file_info, "width": width, "height": height}]
            else:
                message["document"] = {**file_info, "file_name": "document", "mime_type": "application/octet-stream"}
            if caption:
                message["caption"] = caption_plain
            self._stored[(chat_id, message["message_id"])] = {**message, "_raw": None}
            self._record(bot_id, "send" + kind.capitalize(), message, caption, params,
                         photo_sha256=digest, file_size=len(data))
            return message

    def _m_sendphoto(self, bot_id: int, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        return self._send_file(bot_id, params, files, "photo")

    def _m_senddocument(self, bot_id: int, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        return self._send_file(bot_id, params, files, "document")

    def _m_sendchataction(self, bot_id: int, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        self._chat_id(params)
        self._require(params, "action")
        return True

    def _m_getchat(self, bot_id: int, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        return self.chat(self._chat_id(params))

    # --------------------------------------------------------- control API

    def control(self, verb: str, path: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        route = path[len("/_control/"):].strip("/")
        if verb == "GET" and route in ("", "health"):
            return 200, {"ok": True}
        if verb == "GET" and route == "messages":
            chat_id = int(query["chat_id"]) if query.get("chat_id") else None
            return 200, self.messages(chat_id, since=int(query.get("since") or 0))
        if verb == "GET" and route == "callback_answers":
            return 200, self.callback_answers()
        if verb == "GET" and route == "requests":
            return 200, self.requests_count()
        if verb == "GET" and route == "waiting_polls":
            return 200, {"waiting": self.waiting_polls()}
        if verb == "GET" and route.startswith("files/"):
            data = self.file_bytes(route[len("files/"):])
            return (200, data) if data is not None else (404, {"error": "no such file"})
        if verb == "POST" and route == "updates":
            return 200, self._control_update(body or {})
        if verb == "POST" and route == "faults":
            body = body or {}
            if body.get("down"):
                self.set_down(True)
            elif body.get("revoke") is not None:
                self.revoke(int(body["revoke"]))
            else:
                self.add_fault(body.get("method"), int(body.get("status", 500)), body.get("retry_after"),
                               body.get("count"))
            return 200, {"ok": True}
        if verb == "DELETE" and route == "faults":
            self.clear_faults()
            return 200, {"ok": True}
        if verb == "POST" and route == "reset":
            self.reset()
            return 200, {"ok": True}
        return 404, {"error": f"unknown control route {verb} {path}"}

    def _control_update(self, body: dict[str, Any]) -> dict[str, Any]:
        token_id = body.get("token_id")
        token_id = int(token_id) if token_id is not None else None
        if "callback_data" in body:
            return self.inject_callback(str(body["callback_data"]), int(body["chat_id"]), int(body["user_id"]),
                                        int(body["message_id"]), token_id)
        if "text" in body:
            return self.inject_text(str(body["text"]), int(body["chat_id"]), int(body["user_id"]),
                                    body.get("chat_type"), token_id)
        update = {k: v for k, v in body.items() if k in UPDATE_TYPES}
        if not update:
            raise ApiError(400, "control update needs text, callback_data or an update object")
        return self.inject_update(update, token_id)


def _make_handler(fake: FakeTelegram) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # no 40 ms delayed-ACK stall between headers and body
        server_version = "FakeTelegram/1.0"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
            # The request line contains the token: never log it.
            return

        def _send(self, status: int, payload: Any) -> None:
            if isinstance(payload, bytes):
                body, ctype = payload, "application/octet-stream"
            else:
                body, ctype = json.dumps(payload, ensure_ascii=False).encode(), "application/json"
            try:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                # the client gave up (a long poll cancelled at shutdown): nothing to answer
                self.close_connection = True

        def _body(self) -> bytes:
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length > 0 else b""

        def _handle(self, verb: str) -> None:
            parts = urlsplit(self.path)
            body = self._body()
            try:
                if parts.path.startswith("/_control/"):
                    decoded = json.loads(body) if body.strip() else None
                    status, payload = fake.control(verb, parts.path, dict(parse_qsl(parts.query)), decoded)
                    self._send(status, payload)
                    return
                match = re.fullmatch(r"/bot([^/]+)/([A-Za-z]+)", parts.path)
                if match is None:
                    self._send(404, {"ok": False, "error_code": 404, "description": "Not Found"})
                    return
                if fake._down:
                    # Refuse like an unreachable server: drop the connection without an answer.
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                params, files = parse_body(self.headers.get("Content-Type", ""), body, parts.query)
                result = fake.call(match.group(1), match.group(2), params, files)
                self._send(200, {"ok": True, "result": result})
            except ApiError as exc:
                self._send(exc.code, exc.envelope())
            except (ValueError, KeyError, TypeError) as exc:
                self._send(400, {"ok": False, "error_code": 400, "description": f"Bad Request: {exc}"})

        def do_GET(self) -> None:  # noqa: N802
            self._handle("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._handle("POST")

        def do_DELETE(self) -> None:  # noqa: N802
            self._handle("DELETE")

    return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.telegram", description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:8081", help="HOST:PORT (port 0: any free port)")
    parser.add_argument("--log", default=None, help="JSONL file recording every sent/edited message")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s level=%(levelname)s %(message)s")
    host, _, port = args.listen.rpartition(":")
    fake = FakeTelegram(host=host or "127.0.0.1", port=int(port), log_path=args.log).start()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    print(f"fake telegram listening on {fake.url}", flush=True)
    stop.wait()
    fake.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
