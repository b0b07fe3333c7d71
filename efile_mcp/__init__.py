"""efile-mcp: a guarded MCP server for deleting files on SCNet storage through the efile OpenAPI v2."""

__version__ = "0.1.0"
