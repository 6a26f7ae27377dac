import os

from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway.settings")
# Static files (admin and dashboard CSS/JS) are served straight from the app
# folders, so a deployment needs no collectstatic step and no CDN.
django_handler = ASGIStaticFilesHandler(get_asgi_application())

from django.conf import settings  # noqa: E402

from gateway.core.bodies import body_bounded  # noqa: E402

# Django's own bodies (dashboard forms, the usage API) are small: bounded in time and size as they are read.
django_application = body_bounded(django_handler, max_bytes=lambda: settings.DATA_UPLOAD_MAX_MEMORY_SIZE)

from gateway.core import metrics  # noqa: E402
from gateway.core.db import hot_connections_close  # noqa: E402
from gateway.core.https import https_send  # noqa: E402
from gateway.pipeline.endpoint import IMAGE_ENDPOINTS, image_endpoint  # noqa: E402  (needs the apps loaded)
from gateway.sweeper import sweeper_start  # noqa: E402
from providers.http import http_client_close  # noqa: E402


async def _lifespan(receive, send) -> None:
    """Server start and stop (Django has no lifespan support): on start, the periodic sweep
    (gateway.sweeper); on stop, close the hot path's connections."""
    sweeper = None
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            sweeper = sweeper_start()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            if sweeper is not None:
                sweeper.cancel()
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
        # Django's SecurityMiddleware does not see these paths: the same redirect and HSTS header here.
        secure_send = await https_send(scope, send)
        if secure_send is not None:
            await image_endpoint(scope, receive, secure_send, route)
    else:
        await django_application(scope, receive, send)
