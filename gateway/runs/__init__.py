"""Running what the rules planned: the step journal, how runs end or retry, the executors,
and what outlasts outages (retry policy, circuit breakers, graceful shutdown).

The worker claims runs and hands each to the executor of its rule's kind (`executor.py`).
"""
