import os

from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway.settings")
# Static files (admin and dashboard CSS/JS) are served straight from the app
# folders, so a deployment needs no collectstatic step and no CDN.
application = ASGIStaticFilesHandler(get_asgi_application())
