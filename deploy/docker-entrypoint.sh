#!/bin/sh
# Container entrypoint: for every variable NAME_FILE that points to a readable, non-empty
# file (a Docker secret), export NAME with the file's content (trailing newline stripped),
# unless NAME is already set. Then run the command. Values are never printed.
set -eu

for pair in $(env | sed -n 's/^\([A-Za-z_][A-Za-z0-9_]*\)_FILE=.*/\1/p'); do
    name="$pair"
    eval "path=\${${name}_FILE}"
    eval "current=\${${name}:-}"
    if [ -n "$current" ] || [ ! -r "$path" ] || [ ! -s "$path" ]; then
        continue
    fi
    value="$(cat "$path")"
    export "$name=$value"
done

exec "$@"
