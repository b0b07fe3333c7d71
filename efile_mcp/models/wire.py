"""Wire models of the SCNet efile OpenAPI v2: the shapes the API speaks, camelCase as on the wire.

Every field name, code and JSON shape here follows `shared/efile-api.md`. These models are the
only thing the sandbox shares with the rest of the package, so the sandbox and the client cannot
drift apart on what the API looks like. Tool output models (snake_case, as agents read them) live
in `efile_mcp.models.results` and reuse the literal types defined here.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

API_PREFIX = "/efile/openapi/v2"
ASYNC_REMOVE = f"{API_PREFIX}/file/async-remove"
TASK_LIST = f"{API_PREFIX}/file/task/list"
TASK_CANCEL = f"{API_PREFIX}/file/task/cancel"
FILE_LIST = f"{API_PREFIX}/file/list"
#: Moving, renaming, making folders and uploading (efile-api.md section 5a): what a quarantine is built from.
FILE_MKDIR = f"{API_PREFIX}/file/mkdir"
FILE_MOVE = f"{API_PREFIX}/file/move"
FILE_RENAME = f"{API_PREFIX}/file/rename"
FILE_UPLOAD = f"{API_PREFIX}/file/upload"

#: The HPC service (quota) lives on its own base URL (`hpcUrls` of the center answer).
HPC_PREFIX = "/hpc/openapi/v2"
QUOTA = f"{HPC_PREFIX}/parastor/quota/usernames/{{username}}"

#: The documented advice: never more than this many objects in one async-remove body.
REMOVE_BATCH_MAX = 100
#: Advice for task/list and task/cancel; the hard maximum is TASK_IDS_HARD_MAX.
TASK_IDS_BATCH = 100
TASK_IDS_HARD_MAX = 500

#: Sources per file/move call (the docs give no limit; the async-remove advice is kept), and the most bytes
#: of the comma-separated `sourcePaths` form field: a move is synchronous, so batches stay modest.
MOVE_BATCH_MAX = 100
MOVE_SOURCES_MAX_BYTES = 64 * 1024

SUCCESS_CODE = "0"

TaskStatus = Literal["waiting", "processing", "cancel", "complete", "fail"]
TERMINAL_STATUSES: frozenset[str] = frozenset({"complete", "fail", "cancel"})
OperationType = Literal["copy", "move", "delete"]
ExecResult = Literal["syncExecSuccess", "syncExecHasError", "asyncSubmitSuccess"]
OrderBy = Literal["name", "size", "lastModifiedTime"]
Order = Literal["asc", "desc"]

#: Meanings of the documented codes (efile-api.md section 7), used in every error we raise.
CODE_MEANINGS: dict[str, str] = {
    "0": "success",
    "10001": "internal or other error",
    "10003": "parameters incomplete",
    "10004": "invalid parameter",
    "10008": "token expired",
    "10009": "unsupported version",
    "911009": "region user does not exist",
    "911020": "file or directory does not exist",
    "911021": "file already exists",
    "911022": "target is not a folder",
    "911025": "share already exists",
    "911029": "path contains special characters",
    "911030": "permission denied",
    "911031": "rename failed",
    "911034": "share link creation failed",
    "911048": "server busy: rate limited",
    "911404": "AC authentication service unreachable",
    "911406": "server could not map the token to a user",
    "911501": "storage quota exhausted",
    "911502": "directory not empty",
    "911504": "command timed out",
    "911505": "file too large to preview",
    "911506": "file type not allowed to open",
    "911507": "source and target are the same",
    "911700": "file name has illegal characters",
}


def code_meaning(code: str) -> str:
    return CODE_MEANINGS.get(code, "undocumented code")


class WireModel(BaseModel):
    """Lenient towards the server (unknown fields kept, not refused), strict about the types we use."""

    # defer_build: validators are built on first use, not at import (the MCP handshake waits for imports).
    model_config = ConfigDict(populate_by_name=True, extra="allow", defer_build=True)


class Envelope(WireModel):
    """`{"code": "0", "msg": "success", "data": ...}`. `code` is a string on the wire; numbers are coerced."""

    code: str
    msg: str | None = None
    data: Any = None

    @field_validator("code", mode="before")
    @classmethod
    def _code_as_string(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("code must be a string or a number")
        if isinstance(value, int | float):
            return str(int(value)) if float(value).is_integer() else str(value)
        return value

    @property
    def ok(self) -> bool:
        return self.code == SUCCESS_CODE


class SourcePath(WireModel):
    """One object of the async-remove body."""

    source_path: str = Field(alias="sourcePath")


Duplicates = Literal["cover", "uncover"]


class MoveForm(WireModel):
    """The form body of file/move: sources comma-separated (so no source may hold a comma), a target folder."""

    source_paths: str = Field(alias="sourcePaths")
    target_path: str = Field(alias="targetPath")
    cover: Duplicates = "uncover"

    @classmethod
    def of(cls, sources: list[str], target: str, *, cover: Duplicates = "uncover") -> MoveForm:
        if not sources:
            raise ValueError("a move needs at least one source")
        for source in sources:
            if "," in source:
                raise ValueError(f"a path holding a comma cannot be carried in sourcePaths: {source!r}")
        return cls(sourcePaths=",".join(sources), targetPath=target, cover=cover)

    def form(self) -> dict[str, str]:
        return {"sourcePaths": self.source_paths, "targetPath": self.target_path, "cover": self.cover}

    @property
    def sources(self) -> list[str]:
        return self.source_paths.split(",")


class RenameForm(WireModel):
    """The form body of file/rename: `newName` is a name, not a path."""

    file_absolute_path: str = Field(alias="fileAbsolutePath")
    new_name: str = Field(alias="newName")

    def form(self) -> dict[str, str]:
        return {"fileAbsolutePath": self.file_absolute_path, "newName": self.new_name}


class MkdirQuery(WireModel):
    """The query string of file/mkdir (the docs' example sends an empty body)."""

    path: str
    create_parents: bool = Field(default=False, alias="createParents")

    def params(self) -> dict[str, str]:
        return {"path": self.path, "createParents": "true" if self.create_parents else "false"}


class FileOperTask(WireModel):
    """A task object: what async-remove answers per path and what task/list returns."""

    task_id: str = Field(alias="taskId")
    user_id: str | None = Field(default=None, alias="userId")
    user_name: str | None = Field(default=None, alias="userName")
    cluster_user_name: str | None = Field(default=None, alias="clusterUserName")
    source_path: str | None = Field(default=None, alias="sourcePath")
    target_path: str | None = Field(default=None, alias="targetPath")
    duplicate_handle_type: str | None = Field(default=None, alias="duplicateHandleType")
    cluster_id: str | None = Field(default=None, alias="clusterId")
    cluster_name: str | None = Field(default=None, alias="clusterName")
    operation_type: OperationType | str | None = Field(default=None, alias="operationType")
    synchronous_execution: bool | None = Field(default=None, alias="synchronousExecution")
    status: TaskStatus | str
    error_code: str | None = Field(default=None, alias="errorCode")
    error_msg: str | None = Field(default=None, alias="errorMsg")
    total_size: int | None = Field(default=None, alias="totalSize")
    total_num: int | None = Field(default=None, alias="totalNum")
    processed_size: int | None = Field(default=None, alias="processedSize")
    processed_num: int | None = Field(default=None, alias="processedNum")
    progress: str | None = None
    submit_time: str | None = Field(default=None, alias="submitTime")
    start_time: str | None = Field(default=None, alias="startTime")
    update_time: str | None = Field(default=None, alias="updateTime")

    @field_validator("error_code", mode="before")
    @classmethod
    def _error_code_as_string(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


class RemoveResult(WireModel):
    """`data` of async-remove."""

    file_oper_tasks: list[FileOperTask] = Field(default_factory=list, alias="fileOperTasks")
    file_oper_duplicate_file_vos: list[Any] | None = Field(default=None, alias="fileOperDuplicateFileVos")
    exec_result: ExecResult | str | None = Field(default=None, alias="execResult")


class TaskIds(WireModel):
    """Body of task/list and task/cancel."""

    task_ids: list[str] = Field(alias="taskIds")


class TaskListResult(WireModel):
    """`data` of task/list: the docs do not show it, so both a bare list and `{"fileOperTasks": [...]}` are accepted."""

    file_oper_tasks: list[FileOperTask] = Field(default_factory=list, alias="fileOperTasks")

    @classmethod
    def from_data(cls, data: Any) -> TaskListResult:
        if data is None or data == "":
            return cls(fileOperTasks=[])
        if isinstance(data, list):
            return cls(fileOperTasks=data)
        return cls.model_validate(data)


class FileEntry(WireModel):
    """One `fileList` entry of file/list."""

    name: str
    path: str
    type: str | None = None
    size: int | None = None
    is_directory: bool | None = Field(default=None, alias="isDirectory")
    is_regular_file: bool | None = Field(default=None, alias="isRegularFile")
    is_symbolic_link: bool | None = Field(default=None, alias="isSymbolicLink")
    owner: str | None = None
    group: str | None = None
    permission: str | None = None
    last_modified_time: str | None = Field(default=None, alias="lastModifiedTime")
    creation_time: str | None = Field(default=None, alias="creationTime")
    last_access_time: str | None = Field(default=None, alias="lastAccessTime")

    @property
    def kind(self) -> Literal["file", "directory", "symlink", "other"]:
        """The entry's kind from the boolean flags, which are better attested than the free-form `type`."""
        if self.is_symbolic_link:
            return "symlink"
        if self.is_directory:
            return "directory"
        if self.is_regular_file:
            return "file"
        lowered = (self.type or "").lower()
        if lowered in {"dir", "directory", "folder", "d"}:
            return "directory"
        if lowered in {"file", "regular", "f", "-"}:
            return "file"
        if lowered in {"link", "symlink", "l"}:
            return "symlink"
        return "other"


class ChildFolder(WireModel):
    """One `children` entry of file/list: a sub-folder (observed not cut by `limit`)."""

    id: str | None = None
    label: str | None = None
    path: str | None = None

    _id_as_string = field_validator("id", mode="before")(lambda v: str(v) if isinstance(v, int) else v)


class FileListResult(WireModel):
    """`data` of file/list."""

    total: int = 0
    path: str | None = None
    file_list: list[FileEntry] = Field(default_factory=list, alias="fileList")
    children: list[ChildFolder] | None = None


class QuotaEntry(WireModel):
    """One element of the quota answer (`data` is an array): sizes in GB; a threshold of 0 means unknown."""

    quota_id: int | str | None = Field(default=None, alias="quotaId")
    username: str | None = None
    path: str | None = None
    threshold: float | None = None
    usage: float | None = None


# ---------------------------------------------------------------------------------------------------
# The AC service: sign-in, token renewal and region discovery (efile-api.md section 6).

#: AK/SK sign-in (recommended), on the API host (SCNET_API_URL).
AKSK_TOKENS = "/api/user/v3/tokens"
#: User/password/orgId sign-in, renewal and region discovery, on the AC host (SCNET_AC_URL).
AC_TOKENS = "/ac/openapi/v2/tokens"
AC_TOKENS_NEXT = "/ac/openapi/v2/tokens/next"
AC_CENTER = "/ac/openapi/v2/center"

#: The `ac` platform region: its token serves platform calls only, never efile.
PLATFORM_CLUSTER_ID = "0"


def _id_as_string(value: Any) -> Any:
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class RegionToken(WireModel):
    """One entry of a sign-in answer: a region and its token (null while the account is suspended)."""

    cluster_id: str = Field(alias="clusterId")
    cluster_name: str | None = Field(default=None, alias="clusterName")
    token: str | None = Field(default=None, repr=False)

    _cluster_id_as_string = field_validator("cluster_id", mode="before")(_id_as_string)

    @property
    def usable(self) -> bool:
        """A region efile can be reached in: not the platform, and not suspended."""
        return self.cluster_id != PLATFORM_CLUSTER_ID and bool(self.token)


class ServiceUrl(WireModel):
    """One `efileUrls[]` (or `hpcUrls[]`, `aiUrls[]`) entry of the center answer."""

    url: str = ""
    enable: bool | str | None = None
    version: str | None = None

    @property
    def enabled(self) -> bool:
        """`enable` is observed both as the string "true" and as a boolean."""
        value = self.enable
        return value is True or (isinstance(value, str) and value.strip().lower() == "true")


class ClusterUserInfo(WireModel):
    user_name: str | None = Field(default=None, alias="userName")
    home_path: str | None = Field(default=None, alias="homePath")


def _entry_cluster(entry: dict[str, Any]) -> str | None:
    value = entry.get("clusterId", entry.get("id"))
    return None if value is None else str(value)


class CenterInfo(WireModel):
    """`data` of center: where the region's services are and who the user is there."""

    efile_urls: list[ServiceUrl] = Field(default_factory=list, alias="efileUrls")
    hpc_urls: list[ServiceUrl] = Field(default_factory=list, alias="hpcUrls")
    cluster_user_info: ClusterUserInfo | None = Field(default=None, alias="clusterUserInfo")

    @classmethod
    def from_data(cls, data: Any, cluster_id: str | None = None) -> CenterInfo:
        """The docs call `data` a list of regions while clients observe one object: accept both.

        From a list, only the entry of the region signed in to (`cluster_id`) will do: another
        region's efile URL and home would send this region's token to the wrong place and anchor
        `~` roots in the wrong home. A lone entry is taken when the id cannot be compared.
        """
        if isinstance(data, list):
            entries = [item for item in data if isinstance(item, dict) and "efileUrls" in item]
            ours = [item for item in entries if cluster_id and _entry_cluster(item) == cluster_id]
            if ours:
                data = ours[0]
            elif len(entries) == 1 and (cluster_id is None or _entry_cluster(entries[0]) in (None, cluster_id)):
                data = entries[0]
            else:
                raise ValueError(
                    f"the center lists {len(entries)} regions and none is the one signed in to "
                    f"(cluster id {cluster_id or 'unknown'})"
                )
        return cls.model_validate(data or {})

    @property
    def efile_url(self) -> str | None:
        """The first enabled efile URL, as the center lists it (with or without `/efile`)."""
        return next((entry.url.strip() for entry in self.efile_urls if entry.enabled and entry.url.strip()), None)

    @property
    def hpc_url(self) -> str | None:
        """The first enabled HPC URL (quota), as the center lists it (with or without `/hpc`)."""
        return next((entry.url.strip() for entry in self.hpc_urls if entry.enabled and entry.url.strip()), None)

    @property
    def home_path(self) -> str | None:
        return self.cluster_user_info.home_path if self.cluster_user_info else None

    @property
    def user_name(self) -> str | None:
        """The cluster user name (the quota call's `{username}`)."""
        return self.cluster_user_info.user_name if self.cluster_user_info else None


class TokenClaims(WireModel):
    """The payload of a region token (an HS256 JWT). Read only for timing: nothing here is verified."""

    expire_time: str | None = Field(default=None, alias="expireTime")  # epoch milliseconds
    cluster_id: str | None = Field(default=None, alias="clusterId")
    user: str | None = None

    _as_strings = field_validator("expire_time", "cluster_id", mode="before")(_id_as_string)
