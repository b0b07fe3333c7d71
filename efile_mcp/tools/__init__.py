"""The MCP tool surface: one module per tool family, declared in `registry.TOOLS`."""
