"""MCP both ways: servers' tools used under the gateway's governance, and the gateway's own
`/mcp` endpoint for agents with scoped tokens. docs/mcp.md is the reference.
"""
