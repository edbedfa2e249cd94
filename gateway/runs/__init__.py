"""Running what the rules planned: retry policy, circuit breakers, graceful shutdown."""
