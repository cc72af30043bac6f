from django.apps import AppConfig


class ConfigConfig(AppConfig):
    name = "tokonomics.config"
    label = "tokonomics_config"
    verbose_name = "Configuration files"
