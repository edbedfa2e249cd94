"""`gateway eval`: replay stored events through a candidate rule set, side effects recorded
not made, and compare what it proposes with what the live rules did (docs/eval.md)."""

from gateway.evaluation.replay import Selection, evaluate
from gateway.evaluation.report import EvalReport

__all__ = ["EvalReport", "Selection", "evaluate"]
