"""Acme for the gateway: the `acme.greet` tool and the `acme` webhook provider.

Found by the gateway through this package's entry points; nothing in the gateway names it.
"""
