"""A folder that changes while it is listed page by page (client/walk.py).

Removals under way in a folder (our own earlier batches, or the server's queued tasks) shift its pages:
names after the removed ones move to lower offsets, and a page asked at the old offset skips them. A
name not seen in such a reading is not proof that it is absent: the execution would report a file still
there as "already absent" and never send it.
"""

from __future__ import annotations

import pytest

from efile_mcp.client.walk import LARGE_PAGE, Listings

from .test_walk_unit import ROOT, MemoryListings, Node

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class ShrinkingFolder(MemoryListings):
    """After its first page is answered, the first `removed` names go (as removals under way would)."""

    removed: int = 0
    answered_first = False

    async def list_dir(self, path: str | None = None, **options: object) -> object:  # type: ignore[override]
        page = await super().list_dir(path, **options)  # type: ignore[arg-type]
        if not self.answered_first and options.get("start", 0) == 0 and not options.get("keyword"):
            self.answered_first = True
            folder = self.folders[ROOT]
            for name in sorted(folder)[: self.removed]:
                del folder[name]
        return page


@pytest.mark.parametrize("removed", [LARGE_PAGE, 200], ids=["second-page-empty", "second-page-short"])
async def test_names_a_shifted_page_skipped_are_looked_up_not_reported_absent(removed: int) -> None:
    count = LARGE_PAGE + 500
    source = ShrinkingFolder({ROOT: {f"g{i:05d}": Node("file", 1) for i in range(count)}})
    source.removed = removed
    listings = Listings(source, concurrency=4)  # type: ignore[arg-type]
    # Names just after the first page, which the shrinking folder moved below the second page's offset.
    wanted = [f"{ROOT}/g{i:05d}" for i in (LARGE_PAGE, LARGE_PAGE + 1, LARGE_PAGE + 150)]
    found = await listings.entries(wanted)
    assert all(found[path] is not None for path in wanted), found
    listing = listings.cached(ROOT)
    assert listing is None or not listing.complete  # a reading that saw the folder shrink is not a whole one


async def test_a_folder_read_whole_while_unchanged_still_says_absent_in_one_reading() -> None:
    count = LARGE_PAGE + 500
    source = MemoryListings({ROOT: {f"g{i:05d}": Node("file", 1) for i in range(count)}})
    listings = Listings(source, concurrency=4)  # type: ignore[arg-type]
    found = await listings.entries([f"{ROOT}/g00001", f"{ROOT}/nope"])
    assert found[f"{ROOT}/g00001"] is not None and found[f"{ROOT}/nope"] is None
    assert len(source.requests) <= 3  # the folder's pages, no name looked up on its own
