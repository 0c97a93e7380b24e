"""The policy file's JSON Schema, generated from the models (``policies/schema.json``).

    python -m approver.policy.schema > policies/schema.json
    python -m approver.policy.schema --tests > policies/test.schema.json

Editors validate policy files with it (yaml-language-server: a first line
``# yaml-language-server: $schema=./schema.json``). A test fails when the committed files
differ from what this prints.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from pydantic import BaseModel

from approver.policy._models import PolicyFile

DIALECT = "https://json-schema.org/draft/2020-12/schema"


def _strip_null(node: Any) -> Any:
    """No value in the language may be null (the loader refuses it); say so in the schema."""
    if isinstance(node, dict):
        out = {k: _strip_null(v) for k, v in node.items() if not (k == "default" and v is None)}
        variants = out.get("anyOf")
        if isinstance(variants, list):
            kept = [v for v in variants if v != {"type": "null"}]
            if len(kept) == 1:
                del out["anyOf"]
                out = {**kept[0], **out}
            else:
                out["anyOf"] = kept
        return out
    if isinstance(node, list):
        return [_strip_null(v) for v in node]
    return node


def schema(model: type[BaseModel] = PolicyFile) -> dict[str, Any]:
    """The JSON Schema of ``model`` (the policy file by default), nulls removed."""
    generated = _strip_null(model.model_json_schema())
    return {"$schema": DIALECT, **generated}


def render(model: type[BaseModel] = PolicyFile) -> str:
    return json.dumps(schema(model), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m approver.policy.schema", description=__doc__)
    parser.add_argument("--tests", action="store_true", help="the policy test file's schema")
    args = parser.parse_args(argv)
    if args.tests:
        from approver.policy.testing import PolicyTestFile

        print(render(PolicyTestFile), end="")
    else:
        print(render(), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
