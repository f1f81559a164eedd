"""The API application factory: ``gunicorn "api.app:create_app()"``."""

from __future__ import annotations

from flask import Flask

from api.context import EXTENSION, ApiContext
from api.errors import register_error_handlers
from api.routes.files import files
from api.routes.health import health
from api.routes.jobs import jobs
from common.settings import Settings, get_settings

# Room for the multipart envelope and the small option fields around the image.
MULTIPART_OVERHEAD = 64 * 1024


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or get_settings()
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_upload_bytes + MULTIPART_OVERHEAD
    app.json.sort_keys = False
    app.extensions[EXTENSION] = ApiContext.build(settings)
    register_error_handlers(app)
    app.register_blueprint(health)
    app.register_blueprint(jobs)
    app.register_blueprint(files)
    return app
