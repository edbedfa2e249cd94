"""Baseline for bench/ingest: the least a Starlette app can do for a webhook POST.

One route that reads the whole body and answers 202 with a JSON body of the gateway's size,
plus a GET for the readiness probe. No verification, no parsing, no storage.
"""

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

ANSWER = b'{"id":0,"duplicate":false}'


async def hook(request: Request) -> Response:
    await request.body()
    return Response(ANSWER, status_code=202, media_type="application/json")


async def healthz(request: Request) -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


app = Starlette(
    routes=[
        Route("/hooks/{source}", hook, methods=["POST"]),
        Route("/healthz", healthz),
    ]
)
