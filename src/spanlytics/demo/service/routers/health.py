"""Health check for load balancers and Kubernetes probes (no authentication)."""

from fastapi import APIRouter

from ..deps import Store
from ..models import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
async def healthz(store: Store) -> Health:
    """Liveness/readiness: the process is up and the store answers."""
    return Health(items=len(store))
