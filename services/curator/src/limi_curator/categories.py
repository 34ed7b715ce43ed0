"""Names of query categories, sources and statuses as people write them, and their enum values.

`category_from_name("backend")` gives QUERY_CATEGORY_BACKEND; LIMI's own category ids from its
released synthesis prompt ("2-3.backend_development", "5-1.codebase-resolve-issues/debugging")
are read too, so its output records import as they are. Unknown names raise `UnknownName`
listing the accepted ones. It does not guess a category from text.
"""

from __future__ import annotations

from limi.query.v1 import query_pb2

CATEGORY_NAMES: dict[str, int] = {
    "algorithm": query_pb2.QUERY_CATEGORY_ALGORITHM,
    "frontend": query_pb2.QUERY_CATEGORY_FRONTEND,
    "backend": query_pb2.QUERY_CATEGORY_BACKEND,
    "deployment": query_pb2.QUERY_CATEGORY_DEPLOYMENT,
    "debugging": query_pb2.QUERY_CATEGORY_DEBUGGING,
    "optimization": query_pb2.QUERY_CATEGORY_OPTIMIZATION,
    "data_processing": query_pb2.QUERY_CATEGORY_DATA_PROCESSING,
    "testing": query_pb2.QUERY_CATEGORY_TESTING,
    "refactoring": query_pb2.QUERY_CATEGORY_REFACTORING,
    "research": query_pb2.QUERY_CATEGORY_RESEARCH,
    "other": query_pb2.QUERY_CATEGORY_OTHER,
}
# LIMI's released prompt (scripts/data_collection/task_meta.py) names its categories like this.
LIMI_CATEGORY_ALIASES = {
    "1-1.algorithm": "algorithm",
    "2-1.application_development": "backend",
    "2-2.llm_development": "research",
    "2-3.backend_development": "backend",
    "2-4.ui_optimization": "frontend",
    "2-5.frontend_development": "frontend",
    "2-6.build_deployment": "deployment",
    "3-1.research": "research",
    "4-1.data/file_analysis/processing": "data_processing",
    "5-1.codebase-resolve-issues/debugging": "debugging",
}
SOURCE_NAMES = {"real": query_pb2.QUERY_SOURCE_REAL, "synthetic": query_pb2.QUERY_SOURCE_SYNTHETIC}
STATUS_NAMES = {
    "pending": query_pb2.QUERY_STATUS_PENDING,
    "emitted": query_pb2.QUERY_STATUS_EMITTED,
    "completed": query_pb2.QUERY_STATUS_COMPLETED,
    "failed": query_pb2.QUERY_STATUS_FAILED,
    "dropped": query_pb2.QUERY_STATUS_DROPPED,
}


class UnknownName(ValueError):
    pass


def _lookup(table: dict[str, int], name: str, what: str) -> int:
    key = name.strip().lower().replace(" ", "_").replace("-", "_")
    if key in table:
        return table[key]
    raise UnknownName(f"unknown {what} {name!r}; expected one of {', '.join(table)}")


def category_from_name(name: str) -> int:
    cleaned = name.strip().lower()
    for alias, target in LIMI_CATEGORY_ALIASES.items():
        if cleaned == alias or cleaned == alias.split(".", 1)[1]:
            return CATEGORY_NAMES[target]
    return _lookup(CATEGORY_NAMES, name, "category")


def source_from_name(name: str) -> int:
    return _lookup(SOURCE_NAMES, name, "source")


def status_from_name(name: str) -> int:
    return _lookup(STATUS_NAMES, name, "status")


def category_name(value: int) -> str:
    for name, number in CATEGORY_NAMES.items():
        if number == value:
            return name
    return "unspecified"


def source_name(value: int) -> str:
    return next((name for name, number in SOURCE_NAMES.items() if number == value), "unspecified")


def status_name(value: int) -> str:
    return next((name for name, number in STATUS_NAMES.items() if number == value), "unspecified")
