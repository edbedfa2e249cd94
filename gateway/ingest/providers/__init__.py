"""Built-in providers, one module each; pyproject.toml lists them under `gateway.providers`."""
