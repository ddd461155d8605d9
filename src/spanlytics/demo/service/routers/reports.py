"""Reports: a deliberately slow endpoint, to see latency in the analytics."""

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from ..deps import get_current_consumer
from ..models import SlowReport

MAX_DELAY_MS = 2000

router = APIRouter(prefix="/reports", tags=["reports"], dependencies=[Depends(get_current_consumer)])


@router.get("/slow", response_model=SlowReport)
async def slow_report(
    delay_ms: Annotated[int, Query(ge=0, description=f"Delay in ms, capped at {MAX_DELAY_MS}")] = 250,
) -> SlowReport:
    """Wait ``delay_ms`` milliseconds (at most 2000) without blocking the event loop."""
    applied = min(delay_ms, MAX_DELAY_MS)
    await asyncio.sleep(applied / 1000)
    return SlowReport(requested_ms=delay_ms, delay_ms=applied)
