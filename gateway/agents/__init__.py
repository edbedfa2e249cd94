"""The gateway's own MCP endpoint, `/mcp`: agents search, operate and approve with scoped
tokens (docs/mcp.md). The MCP servers the gateway uses are `gateway.mcp`'s.
"""
