"""The cold-start floor: the smallest useful MCPServer (one tool) served over stdio.

efile-mcp cannot start faster than the SDK it is built on; this process measures what the SDK
alone costs on this machine, in the same run, so the cold-start figure is a ratio to it.
"""

from mcp.server.mcpserver import MCPServer

server = MCPServer("baseline")


@server.tool()
def echo(text: str) -> str:
    """Return the text."""
    return text


if __name__ == "__main__":
    server.run()
