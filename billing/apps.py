from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "billing"
    verbose_name = "Catalog, pricing and usage"

    def ready(self) -> None:
        from billing import signals

        signals.connect()
