"""Section 3: what a dry run costs the API. Requests must grow with distinct parents, not with paths."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from common import Row, delayed_sandbox, efile_stdio, make_tree

SECTION = "3 dry-run API cost"
LIST_PAGE = 1000  # entries per page of the fallback listing (efile_mcp.client.walk.DOCUMENTED_PAGE)


def dry_run_requests(sandbox: Any, audit: Path, paths: list[str]) -> dict[str, int]:
    """Requests the sandbox receives, by endpoint, for one dry run of `paths` over stdio."""
    with efile_stdio(sandbox, audit, "--max-paths", str(len(paths))) as session:
        sandbox.reset_counts()
        plan = session.call_tool("remove_paths", {"paths": paths})
        counts = sandbox.request_counts()
    assert plan["summary"]["would_remove"] == len(paths), plan["summary"]
    return counts


def run(quick: bool, context: dict[str, Any]) -> list[Row]:
    rows = []
    layouts = [(100, 100), (5, 2000)]  # 10,000 paths: one page per parent, then two pages per parent
    with delayed_sandbox() as sandbox, tempfile.TemporaryDirectory(prefix="efile-bench-cost-") as tmp:
        for parents, per_parent in layouts:
            paths = make_tree(sandbox, f"t{parents}x{per_parent}", parents, per_parent)
            counts = dry_run_requests(sandbox, Path(tmp) / "audit.jsonl", paths)
            total = sum(counts.values())
            pages = -(-per_parent // LIST_PAGE)  # the fewest listings a parent of this size needs
            context.setdefault("dry_run_cost", []).append({"parents": parents, "per_parent": per_parent, **counts})
            layout = f"{len(paths):,} paths in {parents} dirs of {per_parent:,}"
            rows += [
                Row(
                    SECTION,
                    f"{layout}: requests",
                    total,
                    "req",
                    note=", ".join(f"{k} {v}" for k, v in sorted(counts.items())),
                ),
                Row(SECTION, f"{layout}: requests per 1000 paths", total * 1000 / len(paths), "req"),
                Row(
                    SECTION,
                    f"{layout}: requests per parent",
                    total / parents,
                    "req",
                    target=pages,
                    note=f"target: {pages} page(s) of {LIST_PAGE} per parent",
                ),
            ]
    return rows
