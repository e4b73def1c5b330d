"""Guards for every YAML file the exporter and the bot read (config.yml, calendar.yml).

- `check_expansion(text, origin)`: refuse a document whose aliases would expand beyond a
  small bound ("billion laughs"), BEFORE any loader builds Python objects from it. The
  tokens are scanned first (a file without aliases costs one scan); only a file with
  aliases is composed into its node graph (linear in the text: an alias is a reference to
  the anchored node, nothing is copied) and the expanded size is counted with memoisation.
  The shipped calendar.yml uses one small `&weekend` anchor ~90 times (~1 000 nodes
  expanded); the bound is 20 000 nodes and 1 000 aliases. A recursive alias is refused.
- `short(value)`: a repr for error messages, bounded in length (80 characters) and in
  the work it takes (reprlib), whatever the value is.
"""

from __future__ import annotations

import reprlib

import yaml

MAX_ALIASES = 1000
MAX_EXPANDED_NODES = 20_000
REPR_LIMIT = 80


class YamlBombError(ValueError):
    """The document's aliases expand beyond the bound; nothing was built from it."""


_repr = reprlib.Repr()
_repr.maxstring = REPR_LIMIT
_repr.maxother = REPR_LIMIT
_repr.maxlist = _repr.maxtuple = _repr.maxset = _repr.maxfrozenset = 6
_repr.maxdict = 4
_repr.maxlevel = 3


def short(value: object, limit: int = REPR_LIMIT) -> str:
    """repr(value), at most `limit` characters (an ellipsis marks a cut)."""
    try:
        text = _repr.repr(value)
    except Exception:  # a hostile __repr__ must not break an error message
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[:limit - 3] + "..."


def check_expansion(text: str, origin: str = "document") -> None:
    """Raise YamlBombError when the aliases of `text` expand beyond the bound.

    Syntax errors are left to the real loader (it names the line); this only refuses
    what it can prove is too big.
    """
    aliases = 0
    try:
        for token in yaml.scan(text, Loader=yaml.SafeLoader):
            if isinstance(token, yaml.AliasToken):
                aliases += 1
                if aliases > MAX_ALIASES:
                    raise YamlBombError(f"{origin}: refused: more than {MAX_ALIASES} YAML aliases "
                                        "(alias expansion is bounded; write the entries out)")
    except yaml.YAMLError:
        return
    if not aliases:
        return
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return
    except RecursionError:
        raise YamlBombError(f"{origin}: refused: YAML nested too deeply") from None
    if root is None:
        return
    memo: dict[int, int] = {}
    visiting: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        known = memo.get(key)
        if known is not None:
            return known
        if key in visiting:
            raise YamlBombError(f"{origin}: refused: a YAML alias refers to its own anchor (recursive)")
        visiting.add(key)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            for child in node.value:
                total += size(child)
                if total > MAX_EXPANDED_NODES:
                    break
        elif isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                total += size(k) + size(v)
                if total > MAX_EXPANDED_NODES:
                    break
        visiting.discard(key)
        if total > MAX_EXPANDED_NODES:
            raise YamlBombError(f"{origin}: refused: YAML aliases expand to more than {MAX_EXPANDED_NODES} "
                                "nodes (a 'billion laughs' document?)")
        memo[key] = total
        return total

    try:
        size(root)
    except RecursionError:
        raise YamlBombError(f"{origin}: refused: YAML nested too deeply") from None


__all__ = ["MAX_ALIASES", "MAX_EXPANDED_NODES", "YamlBombError", "check_expansion", "short"]
