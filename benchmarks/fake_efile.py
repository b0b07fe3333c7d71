"""An in-process fake efile API for the removal benchmarks: the real server code over an httpx transport seam.

bench_walk.py's `FakeListing` stands in for `EfileApi.list_dir` (the walker alone). A removal needs the
rest of the API too: the parent's listing where the folder is looked up, `async-remove` and `task/list`,
and for a quarantine `file/mkdir`, `file/move` and `file/upload`. `FakeEfile` answers all of them as
HTTP, through `httpx.MockTransport`, so the real `EfileTransport` (envelope decoding, retries) and the
real `Guard` run unchanged on top of it.

The storage: a virtual tree (a bench_walk `Shape`, generated on demand, nothing on disk) mounted at a
path that a move changes and a removal ends, plus a few real folders and files above and beside it
(the home, the quarantine folders, a manifest). Every request is answered after RTT (20 ms) like the
sandbox. A listing's entries are encoded once per distinct folder (the server's work, shared with the
baselines, as in bench_walk) and the page is the join of them; the client decodes every page.
"""

from __future__ import annotations

import json
import re
import secrets
from collections import Counter
from typing import Any
from urllib.parse import parse_qs

import anyio
import httpx2 as httpx
from bench_walk import MAX_LIMIT, ROOT, FakeListing, Shape
from common import RTT

from efile_mcp.models.wire import (
    ASYNC_REMOVE,
    FILE_LIST,
    FILE_MKDIR,
    FILE_MOVE,
    FILE_UPLOAD,
    TASK_LIST,
)

#: The home that holds the virtual tree (ROOT = HOME/data): the allowed root of the removal benchmarks.
HOME = ROOT.rpartition("/")[0]


_REGULAR_FLAGS = b'"isRegularFile": true, "isSymbolicLink": false'
_LINK_FLAGS = b'"isRegularFile": false, "isSymbolicLink": true'


def _parent(path: str) -> str:
    return path.rpartition("/")[0] or "/"


def _envelope(data_json: bytes, code: str = "0", msg: str = "success") -> httpx.Response:
    return httpx.Response(
        200, content=b'{"code": "%s", "msg": "%s", "data": %s}' % (code.encode(), msg.encode(), data_json)
    )


def _error(code: str, msg: str) -> httpx.Response:
    return _envelope(b"null", code, json.dumps(msg)[1:-1])


class FakeEfile:
    """The storage and its API. `transport()` is the seam for `EfileTransport(http_transport=...)`."""

    def __init__(self, shape: Shape, *, delay: float = RTT, links: bool = False) -> None:
        self.shape = shape
        self.delay = delay
        #: Every file of the virtual tree a symbolic link instead (a dataset "copied" as a farm of links).
        self.links = links
        self.encoder = FakeListing(shape, delay=0)  # its per-folder encoding cache
        #: Where the virtual tree's root (ROOT) is now; None once removed.
        self.mount: str | None = ROOT
        self.dirs: set[str] = {"/public", "/public/home", HOME}
        self.files: dict[str, int] = {}
        self.tasks: dict[str, dict[str, Any]] = {}
        self.requests: Counter[str] = Counter()
        self.in_flight = 0
        self.most_in_flight = 0

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def warm(self) -> None:
        self.encoder.warm()

    # ------------------------------------------------------------------ the API

    async def handle(self, request: httpx.Request) -> httpx.Response:
        endpoint = request.url.path
        await request.aread()
        self.requests[endpoint.rpartition("/v2/")[2]] += 1
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await anyio.sleep(self.delay)
        finally:
            self.in_flight -= 1
        if endpoint == FILE_LIST:
            params = request.url.params
            return self.list(
                params.get("path") or HOME,
                start=int(params.get("start", 0)),
                limit=int(params.get("limit", 100)),
                keyword=params.get("keyWord") or None,
            )
        if endpoint == ASYNC_REMOVE:
            return self.remove([item["sourcePath"] for item in json.loads(request.content)])
        if endpoint == TASK_LIST:
            wanted = json.loads(request.content)["taskIds"]
            found = [dict(self.tasks[t], status="complete") for t in wanted if t in self.tasks]
            return _envelope(json.dumps({"fileOperTasks": found}).encode())
        if endpoint == FILE_MKDIR:
            return self.mkdir(request.url.params["path"])
        if endpoint == FILE_MOVE:
            form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
            return self.move(form["sourcePaths"].split(","), form["targetPath"])
        if endpoint == FILE_UPLOAD:
            body = request.content
            folder = re.search(rb'name="path"\r\n\r\n([^\r]*)', body)
            name = re.search(rb'filename="([^"]*)"', body)
            if folder is None or name is None:
                return _error("10003", "parameters incomplete")
            target = f"{folder.group(1).decode()}/{name.group(1).decode()}"
            if target in self.files:
                return _error("911021", "exists")
            self.files[target] = len(body)
            return _envelope(b"null")
        return _error("10001", f"no such endpoint in the fake: {endpoint}")

    def _virtual(self, path: str) -> str | None:
        """`path` inside the mounted tree, as the shape names it (ROOT...); None when it is outside."""
        mount = self.mount
        if mount is not None and (path == mount or path.startswith(mount + "/")):
            return ROOT + path[len(mount) :]
        return None

    def list(self, path: str, *, start: int, limit: int, keyword: str | None) -> httpx.Response:
        if limit > MAX_LIMIT:
            return _error("10004", f"limit at most {MAX_LIMIT}")
        virtual = self._virtual(path)
        if virtual is not None:
            found = self.shape.contents(virtual)
            if found is None:
                return _error("911020", f"{path} does not exist")
            dirs, files = found
            if keyword:
                data = FakeListing._page_text(dirs, files, start, limit, keyword, path)
            else:
                texts = self.encoder._folder_texts(dirs, files, path)
                total = len(dirs) + files
                if texts is None:
                    listed = FakeListing._entry_texts(dirs, files, start, min(total, start + limit), path)
                else:
                    listed = texts[start : start + limit]
                data = b'{"total": %d, "fileList": [%s]}' % (total, b", ".join(listed))
            if self.links:
                data = data.replace(_REGULAR_FLAGS, _LINK_FLAGS)
            return _envelope(data[:-1] + b', "path": %s}' % json.dumps(path).encode())
        if path not in self.dirs:
            return _error("911020", f"{path} does not exist")
        names = [(d.rpartition("/")[2], True) for d in self.dirs if _parent(d) == path]
        names += [(f.rpartition("/")[2], False) for f in self.files if _parent(f) == path]
        if self.mount is not None and _parent(self.mount) == path:
            names.append((self.mount.rpartition("/")[2], True))
        names.sort()
        if keyword:
            names = [n for n in names if keyword in n[0]]
        listed = [FakeListing._entry(name, is_dir, path) for name, is_dir in names[start : start + limit]]
        return _envelope(json.dumps({"total": len(names), "path": path, "fileList": listed}).encode())

    def _exists(self, path: str) -> bool:
        virtual = self._virtual(path)
        if virtual is not None:
            return self.shape.contents(virtual) is not None or self._file_in_tree(virtual)
        return path in self.dirs or path in self.files

    def _file_in_tree(self, virtual: str) -> bool:
        found = self.shape.contents(_parent(virtual))
        return found is not None and virtual.rpartition("/")[2].startswith("f")

    def remove(self, paths: list[str]) -> httpx.Response:
        tasks = []
        for path in paths:
            if not self._exists(path):
                return _error("911020", f"{path} does not exist")
        for path in paths:
            if path == self.mount:
                self.mount = None
            elif path in self.dirs:
                self.dirs = {d for d in self.dirs if d != path and not d.startswith(path + "/")}
                self.files = {f: s for f, s in self.files.items() if not f.startswith(path + "/")}
                if self.mount is not None and self.mount.startswith(path + "/"):
                    self.mount = None
            else:
                self.files.pop(path, None)  # a file inside the virtual tree: not modelled, its folder stays
            task = {
                "taskId": secrets.token_hex(16),
                "sourcePath": path,
                "operationType": "delete",
                "synchronousExecution": False,
                "status": "waiting",
            }
            self.tasks[task["taskId"]] = task
            tasks.append(task)
        return _envelope(json.dumps({"fileOperTasks": tasks, "execResult": "asyncSubmitSuccess"}).encode())

    def mkdir(self, path: str) -> httpx.Response:
        if self._virtual(path) is not None:
            return _error("10001", "the fake makes no folders inside its virtual tree")
        at = path
        while at not in self.dirs and at != "/":
            self.dirs.add(at)
            at = _parent(at)
        return _envelope(b"null")

    def move(self, sources: list[str], target: str) -> httpx.Response:
        if target not in self.dirs:
            return _error("911022", f"{target} is not a folder")
        for source in sources:
            if not self._exists(source):
                return _error("911020", f"{source} does not exist")
            if self._exists(f"{target}/{source.rpartition('/')[2]}"):
                return _error("911021", "the target exists")
        for source in sources:
            moved = f"{target}/{source.rpartition('/')[2]}"
            if source == self.mount:
                self.mount = moved
            elif source in self.dirs:
                below = {d for d in self.dirs if d == source or d.startswith(source + "/")}
                self.dirs = (self.dirs - below) | {moved + d[len(source) :] for d in below}
                self.files = {
                    (moved + f[len(source) :] if f.startswith(source + "/") else f): s for f, s in self.files.items()
                }
                if self.mount is not None and self.mount.startswith(source + "/"):
                    self.mount = moved + self.mount[len(source) :]
            elif source in self.files:
                self.files[moved] = self.files.pop(source)
            else:
                return _error("10001", "the fake moves no single files out of its virtual tree")
        return _envelope(b"null")
