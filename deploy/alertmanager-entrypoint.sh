#!/bin/sh
# Entrypoint for the Alertmanager container: Alertmanager logs the Bot API URL of a failed
# Telegram delivery, token included ("Post \"https://api.telegram.org/bot<TOKEN>/sendMessage\"").
# Its output goes through a FIFO to a filter that redacts tokens, while Alertmanager itself
# stays PID 1 (exec), so `docker stop` reaches it and it saves silences on the way out.
set -eu
bin="${ALERTMANAGER_BIN:-/bin/alertmanager}"
fifo="${TMPDIR:-/tmp}/alertmanager-log.$$"
rm -f "$fifo"
mkfifo "$fifo"
awk '{ gsub(/bot[0-9]+:[A-Za-z0-9_-]+/, "bot<redacted>"); print; fflush() }' < "$fifo" &
exec "$bin" "$@" > "$fifo" 2>&1
