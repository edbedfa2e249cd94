"""The admin API's evals: those `gateway eval` kept in the eval store (`eval.store`), listed,
read whole (the report, secret-looking arguments redacted) and deleted. The dashboard's eval
pages show the same shapes.
"""

from __future__ import annotations

from typing import Self

from pydantic import Field

from gateway import operations
from gateway.api.detail import redactor_for
from gateway.api.endpoints import Admin
from gateway.api.models import Cost, Shape, Timestamp
from gateway.evaluation import stored
from gateway.evaluation.report import EvalReport
from gateway.store.records import EvalSummary


class EvalRow(Shape):
    id: int
    created_at: Timestamp
    rules: str = Field(description="the candidate rules directory")
    events: int = Field(description="stored events replayed")
    changed: int = Field(description="events whose proposed calls changed")
    cost_live: Cost
    cost_candidate: Cost
    cost_delta: Cost
    latency_delta_ms: float
    expectations: int = Field(description="runs and fixtures whose `expect:` was checked")
    pass_rate: float | None = Field(description="share of them that passed; null: none")

    @classmethod
    def of(cls, summary: EvalSummary) -> Self:
        return cls(
            id=summary.id,
            created_at=summary.created_at,
            rules=summary.rules,
            events=summary.events,
            changed=summary.changed,
            cost_live=round(summary.cost_live, 6),
            cost_candidate=round(summary.cost_candidate, 6),
            cost_delta=round(summary.cost_candidate - summary.cost_live, 6),
            latency_delta_ms=summary.latency_delta_ms,
            expectations=summary.expectations,
            pass_rate=summary.pass_rate,
        )


class EvalList(Shape):
    items: list[EvalRow] = Field(description=f"newest first, at most {stored.MAX_LISTED}")


class EvalDetail(Shape):
    eval: EvalRow
    report: EvalReport


class EvalDeleted(Shape):
    id: int
    deleted: bool


async def list_evals(admin: Admin) -> EvalList:
    return EvalList(items=[EvalRow.of(s) for s in await stored.listed(admin.config.eval_store_url)])


async def get_eval(admin: Admin, id: int) -> EvalDetail:
    kept = await stored.stored(admin.config.eval_store_url, id)
    if kept is None:
        raise operations.NotFound("eval", id)
    report = EvalReport.model_validate(kept.report).redacted(redactor_for(admin.config))
    return EvalDetail(eval=EvalRow.of(kept.summary), report=report)


async def delete_eval(admin: Admin, id: int) -> EvalDeleted:
    if not await stored.delete(admin.config.eval_store_url, id):
        raise operations.NotFound("eval", id)
    return EvalDeleted(id=id, deleted=True)
