import os

from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway.settings")
# Static files (admin and dashboard CSS/JS) are served straight from the app
# folders, so a deployment needs no collectstatic step and no CDN.
django_application = ASGIStaticFilesHandler(get_asgi_application())

from gateway.core import metrics  # noqa: E402
from gateway.core.db import hot_connections_close  # noqa: E402
from gateway.pipeline.endpoint import IMAGE_ENDPOINTS, image_endpoint  # noqa: E402  (needs the apps loaded)
from providers.http import http_client_close  # noqa: E402


async def _lifespan(receive, send) -> None:
    """Server start and stop (Django has no lifespan support): on stop, close the hot path's connections."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await hot_connections_close()
            await http_client_close()
            metrics.process_exit()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def application(scope, receive, send):
    """The image endpoints take the lean path (gateway.pipeline.endpoint); everything else is Django."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    route = IMAGE_ENDPOINTS.get(scope.get("path", "").rstrip("/")) if scope["type"] == "http" else None
    if route is not None:
        await image_endpoint(scope, receive, send, route)
    else:
        await django_application(scope, receive, send)
