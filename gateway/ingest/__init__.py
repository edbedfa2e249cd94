"""Webhook ingest: sources, the providers that verify them, and the HTTP endpoint."""
