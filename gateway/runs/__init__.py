"""Running what the rules planned: the step journal, how runs end or retry, and the executors.

The worker claims runs and hands each to the executor of its rule's kind (`executor.py`).
"""
