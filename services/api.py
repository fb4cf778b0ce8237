"""storeflow's small HTTP API: the Clowder v2 routes a stock extractor calls
(services/api_clowder.py) and the seed's listener API (services/api_listeners.py).

Extractors present the submission's temporary key as `X-API-KEY`; it grants exactly
the submission's file (download it, read and add its metadata) and its dataset (upload
a new file into it).  User keys grant the listener API (deleting needs an admin key).
Anything else is refused: 401 without a valid key, 403 with one that does not grant
it, and nothing is served or changed (services/api_access.py).
"""

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from storeflow.blocks.config import StoreflowConfig
from storeflow.models.api_keys import Forbidden, Unauthorized
from storeflow.models.errors import InvalidInput
from storeflow.services import api_clowder, api_listeners
from storeflow.services.api_access import Granted

# What each refusal answers.
STATUS = {Unauthorized: 401, Forbidden: 403, InvalidInput: 422}
EVERY_METHOD = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


def _refusal(_: Request, exc: Exception) -> JSONResponse:
    status = next(code for error, code in STATUS.items() if isinstance(exc, error))
    return JSONResponse({"detail": str(exc)}, status_code=status)


def create_app(config: StoreflowConfig) -> FastAPI:
    app = FastAPI(title="storeflow", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.config = config
    for error in STATUS:
        app.add_exception_handler(error, _refusal)
    app.include_router(api_clowder.router)
    app.include_router(api_listeners.router)

    # Last: a path no route above serves is refused (after the key is checked).
    @app.api_route("/{path:path}", methods=EVERY_METHOD)
    def refuse(path: str, found: Granted) -> None:
        raise Forbidden(f"/{path} is not served to this key")

    return app
