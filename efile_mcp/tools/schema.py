"""Published schemas, compact: every session pays for `tools/list` in context, so it carries meaning, not noise.

pydantic writes a `title` for every property (the field name again, capitalised) and spells an optional
value as `anyOf: [X, {type: null}]` with `default: null`. Agents gain nothing from either. Here:
- titles go (a property *named* `title` stays: only string titles are metadata);
- an optional value becomes X itself, not required (inputs: leaving it out means "not given"; outputs:
  answers leave absent values out, they never send null);
- output schemas drop defaults (an answer states its values) and `additionalProperties: false`, and describe
  nested objects as `object` (the top-level fields say what each holds; the answer names its own fields);
  they list no `required` fields (an answer leaves absent values out, and says what it has) and no
  descriptions: the field names say what they hold, and the tool's description says what to do with them.
Descriptions, types, bounds and enums stay: they are what an agent reads.
"""

from __future__ import annotations

from typing import Any

_NULL = {"type": "null"}


def _compact(node: Any, *, output: bool) -> Any:
    if isinstance(node, list):
        return [_compact(item, output=output) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "title" and isinstance(value, str):
            continue
        if key in ("properties", "$defs"):
            out[key] = {name: _compact(sub, output=output) for name, sub in value.items()}
        elif (key == "default" and (output or value is None)) or (output and key == "additionalProperties"):
            continue
        else:
            out[key] = _compact(value, output=output)
    options = out.get("anyOf")
    if isinstance(options, list) and _NULL in options:
        rest = [option for option in options if option != _NULL]
        del out["anyOf"]
        if len(rest) == 1:
            out = {**rest[0], **out}
        else:
            out["anyOf"] = rest
    return out


def compact_input(schema: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = _compact(schema, output=False)
    return result


def _shallow(node: Any) -> Any:
    """Nested objects as plain `object`: an answer names its own fields; the top level says what each is for."""
    if isinstance(node, list):
        return [_shallow(item) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        return {"type": "object", **{k: v for k, v in node.items() if k != "$ref"}}
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "properties":
            out[key] = {name: _shallow(sub) for name, sub in value.items()}
        elif key == "items" and isinstance(value, dict) and "$ref" in value:
            continue  # an array of objects: `array` says enough
        elif key not in ("$defs", "required", "description"):
            out[key] = _shallow(value)
    return out


def compact_output(schema: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = _shallow(_compact(schema, output=True))
    return result
