"""The ASGI app built from the environment, for uvicorn and gunicorn to import."""

from service import heap

with heap.building():
    from service.app import create_app
    from service.settings import ServiceSettings

    settings = ServiceSettings.from_env()
    app = create_app(settings)

if settings.gc_freeze:
    # Frozen here already, gunicorn's master (preload) forks its workers with the app out of the
    # collector's reach: each worker's own freeze at start-up then walks only what it made since.
    heap.freeze()
