from django.apps import AppConfig

from gateway.celery import app as celery_app


class GatewayConfig(AppConfig):
    name = "gateway"
    verbose_name = "Gateway"

    def ready(self) -> None:
        # Every process registers every app's Celery tasks, web workers and commands included, not only
        # Celery's own workers: work is enqueued by task name (gateway.core.queue), and inline (without a
        # broker) the task must be found in the process that enqueues it.
        celery_app.autodiscover_tasks(force=True)
