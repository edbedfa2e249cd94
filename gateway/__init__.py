"""A webhook-to-assistant automation gateway.

Verified webhooks in, durable events, rules and assistants out.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("webhook-gateway")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
