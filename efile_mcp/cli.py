"""`efile-mcp`: serve MCP over stdio (the default), against a local sandbox (`--sandbox`), or run the demo.

stdout carries MCP messages only; everything else goes to stderr. Secrets are never flags: the token,
or the SCNet sign-in credentials, come from the environment.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from . import __version__
from .errors import ConfigError

log = logging.getLogger("efile_mcp")


#: Flags a person may reach for, and the environment variable each secret belongs in instead.
_SECRET_FLAGS = {
    ("--token", "--efile-token"): "EFILE_TOKEN",
    ("--secret-key", "--scnet-secret-key", "--sk"): "SCNET_SECRET_KEY",
    ("--password", "--scnet-password"): "SCNET_PASSWORD",
    ("--access-key", "--scnet-access-key", "--ak"): "SCNET_ACCESS_KEY",
    ("--org-id", "--scnet-org-id"): "SCNET_ORG_ID",
    ("--confirm-secret", "--efile-confirm-secret"): "EFILE_CONFIRM_SECRET",
}


class _SecretFlag(argparse.Action):
    """Secrets on a command line show in `ps` and shell history: say where they go instead."""

    def __call__(self, parser: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        variable = next(env for flags, env in _SECRET_FLAGS.items() if self.option_strings[0] in flags)
        parser.error(f"{self.option_strings[0]} is not accepted on the command line (it would be visible to "
                     f"other users in the process list): set {variable} in the environment instead")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="efile-mcp",
        description="A guarded MCP server for deleting files on SCNet storage (efile OpenAPI v2). "
        "Serves MCP over stdio. Credentials come from the environment (EFILE_TOKEN, or SCNET_USER with "
        "SCNET_ACCESS_KEY and SCNET_SECRET_KEY), never from flags.",
    )
    parser.add_argument("--version", action="version", version=f"efile-mcp {__version__}")
    for flags in _SECRET_FLAGS:
        parser.add_argument(*flags, action=_SecretFlag, nargs="?", help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help="efile base URL of the region (EFILE_BASE_URL; default: discovered)")
    parser.add_argument("--region", help="SCNet region name or cluster id to sign in to (SCNET_REGION)")
    parser.add_argument(
        "--allowed-root",
        action="append",
        metavar="PATH",
        help="absolute remote prefix under which deletion is allowed; repeatable (EFILE_ALLOWED_ROOTS)",
    )
    parser.add_argument("--protect", action="append", metavar="NAME", help="extra protected name; repeatable")
    parser.add_argument("--max-paths", type=int, metavar="N", help="most paths one call may name (default 1000)")
    parser.add_argument("--read-only", action="store_true", default=None, help="offer no tool that changes anything")
    parser.add_argument("--audit-log", type=Path, metavar="FILE", help="audit log file (EFILE_AUDIT_LOG)")
    parser.add_argument(
        "--sandbox",
        nargs="?",
        const="",
        metavar="DIR",
        help="serve against an in-process efile sandbox over DIR (default: a fresh sample tree in a temp dir)",
    )
    parser.add_argument(
        "--log-level", default=os.environ.get("EFILE_LOG_LEVEL", "WARNING"), help="stderr log level (WARNING)"
    )
    parser.add_argument(
        "--transport", choices=["stdio", "http"], default="stdio", help="stdio (default) or Streamable HTTP"
    )
    parser.add_argument("--host", default="127.0.0.1", help="HTTP: address to bind (default 127.0.0.1, loopback)")
    parser.add_argument("--port", type=int, default=8765, help="HTTP: port (default 8765); the endpoint is /mcp")
    parser.add_argument("command", nargs="?", choices=["serve", "demo"], default="serve", help="serve (default) or demo")
    return parser


def _configure_logging(level: str) -> None:
    logging.basicConfig(stream=sys.stderr, level=level.upper(), format="efile-mcp %(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "httpx2", "httpcore", "httpcore2", "uvicorn", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "demo":
        from .demo import run_demo

        return run_demo()
    _configure_logging(args.log_level)
    try:
        overrides = {
            "base_url": args.base_url,
            "allowed_roots": tuple(args.allowed_root) if args.allowed_root else None,
            "protected": tuple(args.protect) if args.protect else None,
            "max_paths": args.max_paths,
            "read_only": args.read_only,
            "audit_log": args.audit_log,
            "scnet_region": args.region,
        }
        sandbox = sandbox_scratch = None
        if args.sandbox is not None:
            sandbox, sandbox_scratch, sandbox_overrides = _start_sandbox(args.sandbox, overrides)
            overrides.update(sandbox_overrides)
        from .config import load_settings
        from .server import build_server

        settings = load_settings(**overrides)
        server = build_server(settings)
        security = _http_security(args.host, settings.http_allowed_hosts) if args.transport == "http" else None
    except ConfigError as exc:
        print(f"efile-mcp: {exc}", file=sys.stderr)
        if sandbox is not None:
            sandbox.stop()
        return 2
    try:
        if args.transport == "http":
            log.warning("serving MCP over Streamable HTTP at http://%s:%d/mcp", args.host, args.port)
            server.run("streamable-http", host=args.host, port=args.port, transport_security=security)
        else:
            server.run()
    except KeyboardInterrupt:
        pass
    finally:
        if sandbox is not None:
            sandbox.stop()
            if sandbox_scratch is not None:
                shutil.rmtree(sandbox_scratch, ignore_errors=True)
    return 0


LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


def _http_security(host: str, allowed_hosts: tuple[str, ...]) -> Any:
    """DNS-rebinding protection: the SDK's own for loopback; for any other address, only the named hosts.

    A server that deletes files must not answer a web page that rebinds a name to it, and must not be
    reachable under a Host header nobody chose.
    """
    if host in LOOPBACK:
        return None  # the SDK enables loopback-only Host/Origin checks by itself
    if not allowed_hosts:
        raise ConfigError(
            f"--host {host} exposes efile-mcp beyond this machine: set EFILE_HTTP_ALLOWED_HOSTS to the host names "
            "(with port) clients use, e.g. efile-mcp.internal:8765, and put an authenticating proxy in front"
        )
    from mcp.server.transport_security import TransportSecuritySettings

    origins = [f"{scheme}://{name}" for name in allowed_hosts for scheme in ("http", "https")]
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True, allowed_hosts=list(allowed_hosts), allowed_origins=origins
    )


def _start_sandbox(directory: str, overrides: dict[str, object]) -> tuple[Any, Path | None, dict[str, object]]:
    """Start the embedded sandbox and point the settings at it (roots default to the sandbox home).

    Without DIR the sandbox lives in a fresh temporary directory (its audit log too), removed at exit.
    """
    from .sandbox import SandboxConfig, run_sandbox_in_thread, seed_sample_tree

    if directory:
        root = Path(directory).expanduser().resolve()
        if not root.is_dir():
            raise ConfigError(f"--sandbox {directory!r} is not a directory")
        scratch = None
    else:
        scratch = Path(tempfile.mkdtemp(prefix="efile-mcp-sandbox-"))
        root = scratch / "home"
        root.mkdir()
        seed_sample_tree(root)
    running = run_sandbox_in_thread(SandboxConfig(root=root))
    log.warning("sandbox: %s is served as %s at %s", root, running.home, running.base_url)
    result: dict[str, object] = {"base_url": running.base_url, "token": running.token}
    # The sandbox has its own token: sign-in credentials in the environment are for the real service.
    result.update(dict.fromkeys(("scnet_user", "scnet_access_key", "scnet_secret_key", "scnet_password", "scnet_org_id"), ""))
    if not overrides.get("allowed_roots") and not os.environ.get("EFILE_ALLOWED_ROOTS"):
        result["allowed_roots"] = (running.home,)
    if not overrides.get("audit_log") and not os.environ.get("EFILE_AUDIT_LOG"):
        # A sandbox session does not belong in the person's real audit trail. Its own lives in a fresh
        # private directory (mkdtemp: 0700, a new name each run), never at a fixed name in the shared
        # temp directory, where another user could plant a file or a link first. Kept after exit with DIR.
        private = scratch or Path(tempfile.mkdtemp(prefix="efile-mcp-sandbox-audit-"))
        result["audit_log"] = private / "audit.jsonl"
    log.warning("sandbox: audit log %s", result.get("audit_log") or overrides.get("audit_log") or "as configured")
    return running, scratch, result
