"""The signing vectors (a verbatim copy of the reference file, read from tests/data), indexed for tests."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

VECTORS_PATH = Path(__file__).resolve().parent.parent / "data" / "signing-vectors.json"


def load_vectors() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(VECTORS_PATH.read_text(encoding="utf-8"))
    return data


VECTORS: dict[str, Any] = load_vectors()


def vectors_by(algorithm_prefix: str) -> list[dict[str, Any]]:
    return [v for v in VECTORS["vectors"] if v["algorithm"].startswith(algorithm_prefix)]


def vector_ids(vectors: list[dict[str, Any]]) -> list[str]:
    return [v["id"] for v in vectors]


def vector(vector_id: str) -> dict[str, Any]:
    """A deep copy of one vector, so a test cannot change what the next one reads."""
    for v in VECTORS["vectors"]:
        if v["id"] == vector_id:
            return copy.deepcopy(v)
    raise KeyError(vector_id)


def error_case(case_id: str) -> dict[str, Any]:
    for case in VECTORS["error_handling"]:
        if case["id"] == case_id:
            return copy.deepcopy(case)
    raise KeyError(case_id)


def headers_without_authorization(v: dict[str, Any]) -> dict[str, str]:
    return {name: value for name, value in v["request"]["headers"] if name.lower() != "authorization"}


def header(v: dict[str, Any], name: str) -> str:
    for key, value in v["request"]["headers"]:
        if key.lower() == name.lower():
            return str(value)
    raise KeyError(name)
