"""The API application factory: ``gunicorn "api.app:create_app()"``."""

from __future__ import annotations

import logging
import time

from flask import Flask, Response, g, request
from flask_cors import CORS
from flask_openapi3 import Info
from pydantic import ValidationError
from werkzeug.exceptions import RequestURITooLarge

from api.auth import authenticate_request
from api.context import EXTENSION, ApiContext
from api.context import ctx as request_context
from api.errors import error_response, register_error_handlers
from api.limits import init_waits, keep_own_retry_after, limiter
from api.metrics import observe_requests
from api.openapi import SECURITY_SCHEMES, DocumentedOpenAPI, servers
from api.routes.batches import batches
from api.routes.demo import demo
from api.routes.docs import docs
from api.routes.files import files
from api.routes.health import health
from api.routes.id_specs import id_specs
from api.routes.jobs import jobs
from api.routes.metrics import mount_metrics
from api.routes.uploads import uploads
from api.schemas import ErrorBody
from api.spool import SpoolingRequest
from common import logging_setup
from common.settings import Settings, get_settings

# Room for the multipart envelope and the small option fields around the image.
MULTIPART_OVERHEAD = 64 * 1024
# A form's text fields (the options) are held in memory, each at most this long (werkzeug's parser
# also holds up to 64 KiB of a part as it reads it); its parts (files and fields) are at most
# werkzeug's default of 1000: larger batches upload through POST /v1/uploads and name keys.
MAX_FORM_FIELD_BYTES = 128 * 1024
API_VERSION = "1.0.0"


def _invalid_request(exc: ValidationError) -> Response:
    """Request validation by the OpenAPI layer, in the API's one error format."""
    first = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(part) for part in first.get("loc", ()))
    return error_response(422, "invalid_option", f"{where}: {first.get('msg', 'invalid value')}")


# Longest request target answered: gunicorn itself refuses longer request lines than it is told
# (`--limit-request-line`, set above this in api_argv and the image) with a page of its own.
MAX_REQUEST_TARGET = 4096


def refuse_long_urls() -> None:
    """A request target longer than ``MAX_REQUEST_TARGET`` is a 414 in the API's own error format."""
    if len(request.full_path) > MAX_REQUEST_TARGET:
        raise RequestURITooLarge(f"the request target is longer than {MAX_REQUEST_TARGET} characters")


def apply_body_limit() -> None:
    """Refuse oversized bodies (413) before they are read: one photo's worth, or a batch's; a JSON body
    has a small limit of its own, since it is parsed in memory."""
    api = request_context()
    if request.is_json:
        request.max_content_length = api.settings.max_json_body_bytes
    elif request.endpoint == "batches.create_batch":
        request.max_content_length = api.settings.max_batch_upload_bytes
    else:
        request.max_content_length = api.settings.max_upload_bytes + MULTIPART_OVERHEAD


# What a browser on another origin may send to, and read from, the API.
CORS_REQUEST_HEADERS = ["Authorization", "X-Api-Key", "Idempotency-Key", "Prefer", "Content-Type"]
CORS_EXPOSED_HEADERS = [
    "Location",
    "Retry-After",
    "RateLimit-Limit",
    "RateLimit-Remaining",
    "RateLimit-Reset",
    "Preference-Applied",
    "Idempotent-Replayed",
    "X-Request-Id",
]


def enable_cors(app: Flask, settings: Settings) -> None:
    """Let the listed origins' web pages call ``/v1/`` (Flask-CORS); nothing is allowed by default."""
    origins = [origin.strip() for origin in settings.cors_origins.split(",") if origin.strip()]
    if origins:
        CORS(
            app,
            resources={r"/v1/*": {"origins": origins}},
            allow_headers=CORS_REQUEST_HEADERS,
            expose_headers=CORS_EXPOSED_HEADERS,
            max_age=600,
            always_send=False,  # only answer requests that carry an Origin
        )


access_log = logging.getLogger("api.access")


def configure_api_logging(settings: Settings) -> None:
    """The process's logs in ``BACKDROP_LOG_FORMAT``, gunicorn's own lines included. One access line
    per request: ours in JSON (with the request and job ids), gunicorn's in text."""
    logging_setup.configure_logging(settings, also=("gunicorn.error",))
    json_lines = settings.log_format == "json"
    logging.getLogger("gunicorn.access").disabled = json_lines
    access_log.disabled = not json_lines
    logging_setup.send_request_ids_with_tasks()


def bind_request_id() -> None:
    """Give the request an id (the client's ``X-Request-Id``, or a new one) that every log line of it carries."""
    g.request_id = logging_setup.request_id_from(request.headers.get("X-Request-Id"))
    g.log_tokens = logging_setup.bind(request_id=g.request_id)


def answer_with_request_id(response: Response) -> Response:
    """Return the request id, and log the request as one line, with the job (or batch) it is about."""
    response.headers["X-Request-Id"] = g.get("request_id", "")
    args = request.view_args or {}
    fields = {"job_id": args.get("job_id"), "batch_id": args.get("batch_id")}
    if request.method == "POST" and response.is_json and 200 <= response.status_code < 300:
        created = response.get_json(silent=True) or {}
        fields["batch_id" if request.path.startswith("/v1/batches") else "job_id"] = created.get("id")
    now = time.perf_counter()
    access_log.info(
        "%s %s %s",
        request.method,
        request.path,  # never the query string: signed download links must not land in a log
        response.status_code,
        extra={
            "status": response.status_code,
            "duration_ms": round((time.perf_counter() - g.get("backdrop_request_started", now)) * 1000, 1),
            **{key: value for key, value in fields.items() if value},
        },
    )
    return response


def unbind_request_id(_: BaseException | None = None) -> None:
    logging_setup.unbind(g.pop("log_tokens", []))


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or get_settings()
    configure_api_logging(settings)
    app = DocumentedOpenAPI(
        __name__,
        info=Info(
            title="Backdrop",
            version=API_VERSION,
            description="Background replacement for portrait and ID photos, as asynchronous jobs.",
        ),
        security_schemes=SECURITY_SCHEMES,
        servers=servers(settings),
        validation_error_status=422,
        validation_error_model=ErrorBody,
        validation_error_callback=_invalid_request,
        doc_ui=False,
        doc_prefix="",
        doc_url="/openapi.json",
    )
    app.config["MAX_CONTENT_LENGTH"] = settings.max_upload_bytes + MULTIPART_OVERHEAD  # see apply_body_limit
    app.request_class = SpoolingRequest  # file parts go to disk as they arrive
    app.config["MAX_FORM_MEMORY_SIZE"] = MAX_FORM_FIELD_BYTES
    app.json.sort_keys = False
    api = ApiContext.build(settings)
    app.extensions[EXTENSION] = api
    register_error_handlers(app)
    enable_cors(app, settings)
    observe_requests(app)  # first: its clock starts before the other hooks
    app.before_request(bind_request_id)
    app.after_request(answer_with_request_id)
    app.teardown_request(unbind_request_id)
    app.before_request(refuse_long_urls)
    app.before_request(authenticate_request)  # before the rate limiter, which counts per key
    app.after_request(keep_own_retry_after)  # after_request runs in reverse: this one after the limiter's
    app.config["RATELIMIT_STORAGE_URI"] = settings.redis_url
    app.config["RATELIMIT_SWALLOW_ERRORS"] = True  # Redis trouble is reported by the routes, not as a 500
    limiter.init_app(app)
    init_waits(app, settings)
    app.register_api(health)
    app.register_api(jobs)
    app.register_api(files)
    app.register_api(batches)
    app.register_api(id_specs)
    app.register_api(uploads)
    app.register_blueprint(docs)
    app.register_blueprint(demo)
    app.before_request(apply_body_limit)
    mount_metrics(app, api.redis)
    return app
