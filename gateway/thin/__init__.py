"""Thin events: deliveries that carry only an id, whose full object the worker fetches from the
provider's API before routing them (a source's `fetch:`), kept beside the raw body.

`fetcher.Fetcher` is one provider's way to fetch; `fetching.Fetching` is the worker's part
that holds thin events back from routing, fetches them, retries and gives up.
"""
