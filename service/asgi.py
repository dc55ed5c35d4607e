"""The ASGI app built from the environment, for uvicorn and gunicorn to import."""

from service.app import create_app

app = create_app()
