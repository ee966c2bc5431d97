"""Python's aiohttp-sse-client, an EventSource that this project did not write, reading one
task's stream for tests/e2e_clients.rs.

Usage: python python_client.py <stream url>
Prints one JSON line per request it makes ({"request": {"url", "lastEventId"}}) and per event
it receives ({"event": {"type", "id", "data"}}); stops at `complete` and exits 0.
"""

import asyncio
import json
import sys

import aiohttp
from aiohttp_sse_client.client import EventSource


def emit(value):
    print(json.dumps(value), flush=True)


async def on_request_start(_session, _context, params):
    # The library's own requests, reported so the test sees that it resumes with Last-Event-ID.
    emit({"request": {"url": str(params.url), "lastEventId": params.headers.get("Last-Event-ID")}})


async def main(url):
    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_request_start)
    async with aiohttp.ClientSession(trace_configs=[trace]) as session:
        async with EventSource(url, session=session) as source:
            async for event in source:
                emit({"event": {"type": event.type, "id": event.last_event_id, "data": event.data}})
                if event.type == "complete":
                    return


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
