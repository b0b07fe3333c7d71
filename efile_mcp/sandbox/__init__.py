"""A faithful local stand-in for the SCNet efile OpenAPI v2, served over real HTTP.

It deletes real files under a local directory (and nothing outside it) and keeps a record of
what it received and deleted, for tests, the demo and benchmarks. It shares only the wire models
with the rest of the package.
"""

from efile_mcp.sandbox.runner import RunningSandbox, run_sandbox_in_thread
from efile_mcp.sandbox.seed import seed_sample_tree
from efile_mcp.sandbox.service import Sandbox, SandboxConfig

__all__ = ["RunningSandbox", "Sandbox", "SandboxConfig", "run_sandbox_in_thread", "seed_sample_tree"]
