"""`gateway eval`: replay stored events through a candidate rule set, side effects recorded
not made, and compare what it proposes with what the live rules did (docs/eval.md).

`replay.evaluate` runs an eval; `selection` picks its events; `report` compares; `expect`
checks a rule's `expect:`; `offline` answers read-only calls from the live journal.
"""
