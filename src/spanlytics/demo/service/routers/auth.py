"""Login (exchange username and password for a bearer token) and "who am I"."""

from fastapi import APIRouter, HTTPException, status

from spanlytics.demo.data import TOKEN_TTL_SECONDS, authenticate_user, issue_token

from ..deps import CurrentConsumer
from ..models import Consumer, LoginRequest, Token

router = APIRouter(prefix="/auth", tags=["auth"])


@router.post("/login", response_model=Token)
async def login(credentials: LoginRequest) -> Token:
    """Return an access token for a demo user (``alice`` / ``wonderland-42``).

    The request body carries a password and the response an access token: exactly what
    spanlytics' default masking rules replace before a request log leaves the process.
    """
    consumer = authenticate_user(credentials.username, credentials.password.get_secret_value())
    if consumer is None:
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="Incorrect username or password",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return Token(access_token=issue_token(consumer["id"]), expires_in=TOKEN_TTL_SECONDS)


@router.get("/me", response_model=Consumer)
async def read_me(consumer: CurrentConsumer) -> Consumer:
    """The consumer this request was identified as."""
    return Consumer(**consumer)
