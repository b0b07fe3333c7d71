"""`efile-mcp`: serve MCP over stdio (the default) or Streamable HTTP, against a local sandbox (`--sandbox`), or run the demo.

stdout carries MCP messages only; everything else goes to stderr. Secrets are never flags: the token,
or the SCNet sign-in credentials, come from the environment. The options are the settings' own
(`config.OPTIONS`): each flag, its help and the override it makes are derived from its field.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NoReturn

from . import __version__, logs
from .errors import ConfigError
from .settings import OPTIONS, Option, load_settings, option

if TYPE_CHECKING:
    from .settings import Settings

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
        parser.error(
            f"{self.option_strings[0]} is not accepted on the command line (it would be visible to "
            f"other users in the process list): set {variable} in the environment instead"
        )


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """One line, not the usage block: what is wrong and where to look."""
        self.exit(2, f"efile-mcp: {message} (see efile-mcp --help)\n")


#: The settings of a real SCNet account. `--sandbox` overrides every one of them with its own.
REAL_ACCOUNT = (
    "base_url", "token", "scnet_user", "scnet_access_key", "scnet_secret_key", "scnet_password", "scnet_org_id",
    "scnet_region", "scnet_ac_url", "scnet_api_url", "scnet_hpc_url",
)  # fmt: skip

#: Positional commands, which `--sandbox demo` would otherwise take for a directory.
COMMANDS = ("serve", "demo", "approve", "purge")


#: The sandbox's quota by default, in GiB: below the sample home's ~58 KiB, so the demo's clean-up starts over quota.
SANDBOX_QUOTA_GIB = 0.00005


def _quota_gb(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a size in GiB (a number, 0 for an unknown quota)")
    return value


def _help(opt: Option) -> str:
    text = opt.description.rstrip(".")
    if text[:1].isupper() and not text[1:2].isupper():
        text = text[0].lower() + text[1:]
    default = opt.default
    if opt.kind == "list":
        text += "; repeatable"
    shown = f"; default {default}" if default not in (None, (), False) else ""
    return f"{text} ({opt.env}{shown})".replace("%", "%%")


def _add_option(parser: argparse.ArgumentParser, opt: Option) -> None:
    assert opt.flag is not None
    # No type= or choices=: the value goes to the settings as given, so a bad one is reported by the same
    # one line whether it came from the flag or the environment.
    if opt.kind == "switch":
        parser.add_argument(opt.flag.name, dest=opt.field, action="store_true", default=None, help=_help(opt))
        return
    metavar = opt.flag.metavar or ("{" + ",".join(opt.choices) + "}" if opt.choices else None)
    action = "append" if opt.kind == "list" else "store"
    parser.add_argument(opt.flag.name, dest=opt.field, action=action, default=None, metavar=metavar, help=_help(opt))


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given as flags (None: not given, the environment or the default decides)."""
    given: dict[str, Any] = {}
    for opt in OPTIONS:
        value = getattr(args, opt.field, None) if opt.flag is not None else None
        if value is not None:
            given[opt.field] = tuple(value) if opt.kind == "list" else value
    return given


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="efile-mcp",
        description="A guarded MCP server for deleting files on SCNet storage (efile OpenAPI v2). "
        "Serves MCP over stdio, or Streamable HTTP with --transport http. Credentials come from the environment "
        "(EFILE_TOKEN, or SCNET_USER with SCNET_ACCESS_KEY and SCNET_SECRET_KEY), never from flags.",
    )
    parser.add_argument("--version", action="version", version=f"efile-mcp {__version__}")
    for flags in _SECRET_FLAGS:
        parser.add_argument(*flags, action=_SecretFlag, nargs="?", help=argparse.SUPPRESS)
    for opt in OPTIONS:
        if opt.flag is not None:
            _add_option(parser, opt)
    parser.add_argument(
        "--sandbox",
        nargs="?",
        const="",
        metavar="DIR",
        help="serve against an in-process efile sandbox over DIR, deleting real files in DIR (an empty DIR gets the "
        "sample home; default: a fresh sample home in a temporary directory, gone at exit); every real-account "
        "setting is ignored",
    )
    parser.add_argument(
        "--quota-gb",
        type=_quota_gb,
        default=SANDBOX_QUOTA_GIB,
        metavar="GiB",
        help="with --sandbox: the quota the sandbox reports for its home, in GiB (binary, 1024**3 bytes; its usage "
        f"is measured from DIR; default {SANDBOX_QUOTA_GIB}, about {round(SANDBOX_QUOTA_GIB * 1024**2)} KiB, so "
        "the sample home starts over quota)",
    )
    parser.add_argument(
        "command",
        nargs="?",
        choices=COMMANDS,
        default="serve",
        help="serve (default), demo, approve (decide a removal that waits for you, on this terminal), or purge "
        "(delete for good the quarantined plans older than EFILE_QUARANTINE_DAYS; cron-able, prints what it did)",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="with purge: print what would be deleted, delete nothing"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "demo":
        from .demo import run_demo

        return run_demo()
    if args.command == "approve":
        return _approve(_overrides(args), args.sandbox)
    overrides = _overrides(args)
    # Until the settings are read, in the format asked for (read raw), so that even their error is in it.
    logs.configure("WARNING", _requested_log_format(overrides))
    ignored: list[str] = []
    if args.sandbox is not None:
        # The sandbox has its own URL, token and home: a real account's settings (say, in the shell) must not
        # reach the real SCNet from a sandbox session, nor be validated as if they would.
        ignored = _real_account_settings_given(overrides)
        overrides.update(dict.fromkeys(REAL_ACCOUNT, ""))
    sandbox = sandbox_scratch = None
    confirm_scope: str | None = None
    try:
        settings = load_settings(**overrides)
        logs.configure(settings.log_level, settings.log_format)
        if args.sandbox is not None:
            sandbox, sandbox_scratch, sandbox_overrides = _start_sandbox(
                args.sandbox, overrides, settings, ignored, args.quota_gb
            )
            overrides.update(sandbox_overrides)
            settings = load_settings(**overrides)
            # Tokens are bound to the sandbox's directory, not its URL (a new port in every process).
            confirm_scope = f"sandbox:{sandbox.root}"
        if (
            settings.transport == "http"
            and sandbox is None
            and not settings.read_only
            and _shared_secret_without_store(settings)
        ):
            log.warning(
                "replicas sharing EFILE_CONFIRM_SECRET need a shared state store: set EFILE_STATE_URL=redis://"
                "host:port/db; removal is disabled until then (serving read-only)"
            )
            overrides["read_only"] = True
            settings = load_settings(**overrides)
        from .serve_http import prepare
        from .server import build_server

        server = build_server(settings, confirm_scope=confirm_scope)
        plan = prepare(settings) if settings.transport == "http" else None
    except ConfigError as exc:
        logs.fatal(str(exc))
        _stop_sandbox(sandbox, sandbox_scratch)
        return 2
    if args.command == "purge":
        if settings.read_only and not args.dry_run:
            logs.fatal("purge deletes for good, and efile-mcp is read-only here (EFILE_READ_ONLY): nothing was deleted")
            _stop_sandbox(sandbox, sandbox_scratch)
            return 2
        try:
            return _purge(server, dry_run=args.dry_run)
        finally:
            _stop_sandbox(sandbox, sandbox_scratch)
    try:
        if plan is not None:
            from .serve_http import serve

            serve(server, plan)
        else:
            server.run()
    except KeyboardInterrupt:
        pass
    finally:
        _stop_sandbox(sandbox, sandbox_scratch)
    return 0


def _approve(overrides: dict[str, Any], sandbox: str | None) -> int:
    """`efile-mcp approve`: the person approves or declines a pending removal on their own terminal.

    Reads only the state store (EFILE_STATE_URL or EFILE_STATE_DIR; with --sandbox DIR, that sandbox's):
    no credentials, no network."""
    from .errors import StateStoreError
    from .review.terminal import run

    logs.configure("WARNING", _requested_log_format(overrides))
    try:
        settings = load_settings(**overrides)
        logs.configure(settings.log_level, settings.log_format)
        state_dir = settings.state_dir
        if sandbox and not settings.state_url and state_dir is None:
            from .sandbox.identity import identity_directory

            state_dir = identity_directory(Path(sandbox).expanduser().resolve())
        return run(settings.state_url, state_dir, None)
    except (ConfigError, StateStoreError) as exc:
        logs.fatal(str(exc))
        return 2


def _purge(server: Any, *, dry_run: bool) -> int:
    """`efile-mcp purge`: delete the expired quarantined plans (audited as `expired`), print one line each.

    The same server set-up as serving (sign-in, roots, state store, audit), without serving; stdout is ours here.
    """
    import anyio

    from .errors import EfileMcpError
    from .guard.quarantine import START_UP_PURGE, PurgeReport

    async def purge() -> list[str]:
        START_UP_PURGE.set(False)  # this command is the purge: the server's own start-up one stays out of it
        async with server.settings.lifespan(server) as state:
            report: PurgeReport = await state.guard.quarantine.purge(dry_run=dry_run, tool="efile-mcp purge")
        return report.lines()

    try:
        lines = anyio.run(purge)
    except EfileMcpError as exc:
        logs.fatal(f"purge: {exc}")
        return 1
    for line in lines:
        print(line)  # stdout: a command's report (cron mails it), never the MCP server's channel
    return 1 if any(line.startswith("error:") or "failed:" in line for line in lines) else 0


def _requested_log_format(overrides: dict[str, Any]) -> Literal["text", "json"]:
    environment = {name.upper(): value for name, value in os.environ.items()}
    asked = overrides.get("log_format") or environment.get(option("log_format").env, "")
    return "json" if str(asked).strip().lower() == "json" else "text"


def _stop_sandbox(sandbox: Any, scratch: Path | None) -> None:
    if sandbox is not None:
        sandbox.stop()
    if scratch is not None:
        shutil.rmtree(scratch, ignore_errors=True)


def _shared_secret_without_store(settings: Settings) -> bool:
    """A confirmation secret shared by replicas, but spent tokens kept per replica: a token could redeem twice."""
    shared_store = (settings.state_url or "").strip().lower().startswith(("redis://", "rediss://"))
    return settings.confirm_secret is not None and not shared_store


def _real_account_settings_given(overrides: dict[str, Any]) -> list[str]:
    """The real-account settings the person gave (as a flag, or non-blank in the environment), by their names."""
    environment = {name.upper(): value for name, value in os.environ.items()}
    given = []
    for field in REAL_ACCOUNT:
        opt = option(field)
        if opt.flag is not None and overrides.get(field) is not None:
            given.append(opt.flag.name)
        elif environment.get(opt.env, "").strip():
            given.append(opt.env)
    return given


def _start_sandbox(
    directory: str, overrides: dict[str, object], configured: Settings, ignored: list[str], quota_gb: float
) -> tuple[Any, Path | None, dict[str, object]]:
    """Start the embedded sandbox and point the settings at it (roots default to the sandbox home, `~` is it).

    Without DIR the sandbox lives in a fresh temporary directory (its audit log and state too), removed at exit.
    With DIR it is the same sandbox in every process (an MCP client may start one server per call): its token,
    confirmation secret, state store and audit log are kept in the state directory under a name derived from DIR
    (`sandbox.identity`), never inside DIR (the sandbox could delete them) and never in the temporary directory.
    """
    from .guard.paths import expand_home, is_home_relative
    from .sandbox import SandboxConfig, run_sandbox_in_thread, seed_sample_tree
    from .sandbox.identity import SandboxIdentity

    if directory:
        root = Path(directory).expanduser().resolve()
        if directory in COMMANDS and not root.is_dir():
            retry = "efile-mcp demo" if directory == "demo" else "efile-mcp --sandbox"
            raise ConfigError(f"`{directory}` is a command, not a directory: run `{retry}`")
        if not root.exists():
            raise ConfigError(
                f"--sandbox {directory}: no such directory; give an existing directory (the sandbox really deletes "
                "files in it), or no DIR for a fresh sample tree"
            )
        if not root.is_dir():
            raise ConfigError(
                f"--sandbox {directory} is not a directory; give a directory (the sandbox really deletes files in "
                "it), or no DIR for a fresh sample tree"
            )
        scratch = None
        if not any(root.iterdir()):
            # Nothing to try a clean-up on: an empty DIR gets the sample home (and keeps it across processes).
            seed_sample_tree(root)
            log.info("sandbox: %s was empty: it now holds the sample home", root)
        identity = SandboxIdentity.for_directory(root, configured.state_dir)
        private = identity.directory
    else:
        scratch = Path(tempfile.mkdtemp(prefix="efile-mcp-sandbox-"))
        root = scratch / "home"
        root.mkdir()
        seed_sample_tree(root)
        identity = SandboxIdentity.fresh(scratch)
        private = scratch
    # No quota cache: the person watches the usage fall right after a removal (a sandbox DIR is small).
    config = SandboxConfig(root=root, token=identity.token, quota_threshold_gb=quota_gb, quota_cache_seconds=0.0)
    running = run_sandbox_in_thread(config)
    log.info("sandbox: %s is served as %s at %s", root, running.home, running.base_url)
    # The sandbox has its own URL, token and quota service (main blanked every other real-account setting).
    result: dict[str, object] = {
        "base_url": running.base_url,
        "token": running.token,
        "scnet_hpc_url": running.base_url,
        "scnet_user": running.sandbox.config.user,
    }
    roots = configured.allowed_roots
    result["allowed_roots"] = tuple(expand_home(r, running.home) for r in roots) if roots else (running.home,)
    home_roots = [r for r in roots if is_home_relative(r)]
    if ignored or home_roots:
        what = []
        if ignored:
            what.append(
                f"ignoring {', '.join(ignored)} (a real account's settings: the sandbox has its own URL, "
                "token and sign-in)"
            )
        if home_roots:
            what.append(f"~ in the allowed roots is the sandbox home {running.home}")
        log.info("sandbox: %s", "; ".join(what))
    if not overrides.get("audit_log") and not os.environ.get("EFILE_AUDIT_LOG"):
        # A sandbox session does not belong in the person's real audit trail: its own is private (0700).
        result["audit_log"] = private / "audit.jsonl"
    log.info("sandbox: audit log %s", result.get("audit_log") or configured.audit_log)
    if (
        not os.environ.get("EFILE_STATE_URL")
        and not os.environ.get("EFILE_STATE_DIR")
        and not overrides.get("state_dir")
    ):
        # Nor do its plans and spent tokens belong in the person's real state store.
        result["state_dir"] = private
    if configured.confirm_secret is None:
        # The same secret in every process of this sandbox: a dry run's token is good in the next one.
        result["confirm_secret"] = identity.confirm_secret
    return running, scratch, result
