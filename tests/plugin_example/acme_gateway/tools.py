"""The `acme` tool family: typed settings, and a client opened once and shared by the calls.

`acme.greet` answers with the count of calls its client has served, so a test can see reuse.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from pydantic import Field

from gateway.tools import Family, FamilySettings, ToolContext


class AcmeSettings(FamilySettings):
    """`handlers.acme`."""

    greeting: str = "Hello"


class Greeter:
    """Stands in for a remote system's client: it counts the calls it serves."""

    def __init__(self, greeting: str) -> None:
        self.greeting = greeting
        self.calls = 0
        self.closed = False

    def greet(self, name: str) -> str:
        self.calls += 1
        return f"{self.greeting}, {name}"


@asynccontextmanager
async def connect(settings: AcmeSettings) -> AsyncIterator[Greeter]:
    greeter = Greeter(settings.greeting)
    try:
        yield greeter
    finally:
        greeter.closed = True


family = Family("acme", AcmeSettings, client=connect)


@family.tool("acme.greet", side_effects=False)
async def greet(
    context: ToolContext[AcmeSettings, Greeter],
    name: Annotated[str, Field(description="Whom to greet")],
) -> dict[str, Any]:
    """Greet someone with the configured greeting; says how many calls its client served."""
    greeter = await context.client()
    return {"greeting": greeter.greet(name), "calls": greeter.calls}
