"""Debug endpoints: an unhandled exception, to see server errors in the analytics."""

from fastapi import APIRouter, Depends

from ..deps import get_current_consumer

router = APIRouter(prefix="/debug", tags=["debug"], dependencies=[Depends(get_current_consumer)])


class DemoError(RuntimeError):
    """Raised on purpose by ``GET /debug/boom``."""


@router.get("/boom")
async def boom() -> None:
    """Raise an unhandled exception: the client gets a 500, the span records the exception."""
    raise DemoError("boom: an intentional unhandled exception")
