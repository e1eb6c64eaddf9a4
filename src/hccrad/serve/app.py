"""``hccrad serve``: a local web app that gives a clinician one patient's predicted response.

FastAPI serves Jinja2 templates and local static files only (no CDN: it works offline). A browser session is a
random cookie; each result lives in memory under a random token and is shown only to the session that made it.
A prediction runs as a background job: the form's post saves the uploads to a private temporary folder, queues the
job and sends the browser to a progress page that shows the job's stage (or its place in the queue) until the
result is ready; the folder is deleted as soon as the job ends. The viewer keeps a downsampled copy of the CT and
its labels in memory until the session's result expires. The patient identifier and accession number typed in the
form are kept in memory with the result and shown on its page and printed report; they are never written to disk.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import Request

from hccrad.io.errors import InputError
from hccrad.serve import present, render
from hccrad.serve.uploads import UploadError, extract_series, image_suffix, save_limited

HERE = Path(__file__).parent
SESSION_COOKIE = "hccrad_session"
CLINICAL_FIELDS = (("afp", "AFP"), ("child_pugh", "Child-Pugh"), ("bclc", "BCLC stage"), ("treatment", "treatment"))
INTENDED_USE = ("Research use only, not a medical device. The prediction comes from a model fitted on a "
                "retrospective cohort; it has not been validated for clinical decisions.")
log = logging.getLogger("hccrad.serve")


@dataclass
class StoredResult:
    """One prediction kept for its session: the numbers, the figures and the viewer's slices."""
    owner: str
    created: float
    result: Any  # hccrad.pipeline.predict.NewPatientResult
    clinical: dict[str, str]
    stack: render.SliceStack | None
    figures: dict[str, str] = field(default_factory=dict)
    #: The patient identifier and accession number typed in the form (memory only, never on disk).
    patient: dict[str, str] = field(default_factory=dict)
    #: Per model: the contribution lines in words (:func:`hccrad.serve.present.contribution_lines`).
    contributions: dict[str, list] = field(default_factory=dict)
    #: The viewer's orientation labels (left, right, top, bottom).
    orientation: dict[str, str] = field(default_factory=dict)
    #: The DICOM series a zip upload was read as, in words (description, slices, UID suffix); "" otherwise.
    series: str = ""


@dataclass
class AppSettings:
    """The app's settings: models folder, upload limit (MB), results kept (at most, per app) and their lifetime
    (seconds), and an optional nnU-Net model that draws a missing mask."""
    models_dir: Path
    upload_limit_mb: float = 1024.0
    #: Results kept by the whole app; when full, a new one is refused (never another session's evicted).
    max_results: int = 32
    result_ttl_s: float = 3600.0
    #: Results kept per browser session; its oldest is replaced by its newest.
    max_results_per_session: int = 4
    segmentation_model: Path | None = None
    #: Host names (the HTTP Host header, without port) the app answers; loopback names are always allowed.
    allowed_hosts: tuple[str, ...] = ()
    #: When set, every request needs HTTP Basic authentication with this password (any user name).
    password: str | None = None
    #: The study's primary model, shown first and marked (the paper's C-T&L).
    primary_model: str = present.PRIMARY_MODEL
    #: Predictions computed at once (each takes a core and about 1 GB); the others wait in the queue.
    max_jobs: int = 1
    #: Predictions waiting or running, at most; a further one is refused (503) with the time to come back.
    max_queued: int = 8
    #: A prediction outside a model's applicability domain: ``warn`` (shown, not bold, with the reason) or
    #: ``withhold`` (its numbers not shown).
    out_of_domain: str = "warn"
    #: TLS ends here (``--tls-cert/--tls-key``) or at a reverse proxy (``--behind-proxy``): the session cookie is
    #: then ``Secure`` and HSTS is sent.
    tls: bool = False
    behind_proxy: bool = False
    #: A session ends after this idle time and this lifetime (seconds), whichever comes first.
    session_idle_s: float = 1800.0
    session_lifetime_s: float = 12 * 3600.0
    #: Failed logins per client address before a lockout, and the lockout's first length (seconds; doubled for
    #: each further failure, at most an hour).
    max_failed_logins: int = 5
    lockout_s: float = 60.0
    #: A prediction running longer than this (seconds) is stopped with a message.
    job_time_limit_s: float = 600.0
    #: A request body still arriving after this many seconds is cut off (a slow client holds no worker forever).
    body_timeout_s: float = 120.0


#: Names of this computer the app always answers (a DNS-rebinding page sends its own name as Host).
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this computer only: ``localhost``, ``::1`` or any address of 127.0.0.0/8."""
    import ipaddress

    if host in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

#: Sent with every response: no script but the app's own files, no framing, no referrer, no type sniffing.
SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                                "img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; "
                                "frame-ancestors 'none'"),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}


class SessionKeys:
    """Session ids the server issued, and their CSRF tokens, signed with a key that lives as long as the process:
    a cookie value the client made up, or one from an earlier run of the app, is not a session."""

    def __init__(self) -> None:
        self._key = secrets.token_bytes(32)

    def _sign(self, purpose: str, session: str) -> str:
        return hmac.new(self._key, f"{purpose}:{session}".encode(), hashlib.sha256).hexdigest()[:32]

    def new_cookie(self) -> tuple[str, str]:
        """A new session id and the cookie value that carries it."""
        session = secrets.token_urlsafe(24)
        return session, f"{session}.{self._sign('session', session)}"

    def session_of(self, cookie: str | None) -> str | None:
        """The session id in a cookie value this server issued, else None."""
        if not cookie or cookie.count(".") != 1:
            return None
        session, signature = cookie.split(".")
        return session if hmac.compare_digest(signature, self._sign("session", session)) else None

    def csrf_token(self, session: str) -> str:
        return self._sign("csrf", session)

    def csrf_ok(self, session: str, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(str(token), self.csrf_token(session))


class SessionClock:
    """When each session began and was last used: a session idle longer than ``idle_s``, or older than
    ``lifetime_s``, has ended (a stolen cookie does not work for the life of the process)."""

    def __init__(self, idle_s: float, lifetime_s: float):
        self.idle_s, self.lifetime_s = idle_s, lifetime_s
        self._seen: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def start(self, session: str) -> None:
        now = time.time()
        with self._lock:
            self._seen[session] = (now, now)

    def current(self, session: str | None) -> str | None:
        """``session`` if it is still alive (its last use refreshed), else None."""
        if session is None:
            return None
        now = time.time()
        with self._lock:
            if len(self._seen) > 10_000:  # forget ended sessions
                self._seen = {k: v for k, v in self._seen.items()
                              if now - v[1] <= self.idle_s and now - v[0] <= self.lifetime_s}
            begun, used = self._seen.get(session, (None, None))
            if begun is None or now - used > self.idle_s or now - begun > self.lifetime_s:
                self._seen.pop(session, None)
                return None
            self._seen[session] = (begun, now)
        return session


class LoginThrottle:
    """Failed passwords per client address: after ``max_failed`` in a row the address is locked out for
    ``lockout_s`` seconds, doubled for each further failure (at most an hour); each lockout is logged as a
    warning. A right password clears the count."""

    def __init__(self, max_failed: int, lockout_s: float):
        self.max_failed, self.lockout_s = max_failed, lockout_s
        self._failures: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()

    def locked_for(self, client: str) -> float:
        """Seconds left of the address's lockout (0 when it may try)."""
        with self._lock:
            count, until = self._failures.get(client, (0, 0.0))
        return max(0.0, until - time.time())

    def failed(self, client: str) -> None:
        with self._lock:
            count, _ = self._failures.get(client, (0, 0.0))
            count += 1
            until = 0.0
            if count >= self.max_failed:
                length = min(3600.0, self.lockout_s * 2 ** (count - self.max_failed))
                until = time.time() + length
                log.warning("locked out %s for %.0f s after %d wrong passwords", client, length, count)
            self._failures[client] = (count, until)
            if len(self._failures) > 100_000:
                self._failures.pop(next(iter(self._failures)))

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._failures.pop(client, None)


def _host_name(host_header: str) -> str:
    """The host name of an HTTP Host header: without the port, IPv6 brackets removed, lower case."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def cross_origin_reason(headers, own_host: str) -> str | None:
    """Why a state-changing request comes from another origin (a page elsewhere, another port of this host),
    or None: the host and port of its ``Origin``, else of its ``Referer``, must be the ``Host`` the request was
    sent to (the scheme is not compared: behind a TLS reverse proxy the browser says https and the app sees http),
    and ``Sec-Fetch-Site`` (set by the browser, never by a page) same-origin. Under ``Referrer-Policy: no-referrer``
    a browser sends ``Origin: null`` with the app's own form, accepted only beside ``Sec-Fetch-Site:
    same-origin``."""
    from urllib.parse import urlsplit

    fetch_site = headers.get("sec-fetch-site")
    if fetch_site and fetch_site not in ("same-origin", "none"):
        return f"the request came from a {fetch_site} page"
    origin = headers.get("origin") or headers.get("referer")
    if origin == "null" and fetch_site == "same-origin":
        return None  # the app's own form under Referrer-Policy no-referrer: the browser vouches for it
    if origin is not None and (origin == "null" or urlsplit(origin).netloc.lower() != own_host.lower()):
        return f"the request came from another site ({origin})"
    return None


def basic_auth_ok(header: str | None, password: str) -> bool:
    """Whether an ``Authorization: Basic`` header carries ``password`` (any user name)."""
    import base64
    import binascii

    if not header or not header.lower().startswith("basic "):
        return False
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return False
    return hmac.compare_digest(decoded.partition(":")[2].encode(), password.encode())


class BodyTooLargeError(Exception):
    """A request body grew past the app's limit while it was being received."""


class BodyTimeoutError(BodyTooLargeError):
    """A request body still arriving past the app's deadline (a slow or stalled client)."""


class BodyLimit:
    """ASGI middleware that counts a request's body as it arrives and fails the read past ``max_bytes``, for a
    chunked body (no Content-Length) too: the form parser then stops, closes and deletes its spooled files, so
    no more than the limit and one chunk ever reaches the disk. A body not complete ``timeout_s`` after the
    request began fails the same way, so a client that sends slowly, or stops, holds no worker."""

    def __init__(self, app, max_bytes: int, timeout_s: float = 120.0):
        self.app, self.max_bytes, self.timeout_s = app, max_bytes, timeout_s

    async def __call__(self, scope, receive, send):
        import asyncio

        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        received = 0
        deadline = time.monotonic() + self.timeout_s

        async def counted():
            nonlocal received
            try:
                message = await asyncio.wait_for(receive(), timeout=max(0.0, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                raise BodyTimeoutError(received) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLargeError(received)
            return message

        return await self.app(scope, counted, send)


class StoreFullError(InputError):
    """Every place for a result is taken by other sessions' results that have not expired yet."""


class ResultStore:
    """Thread-safe in-memory results, expired after their lifetime. A session keeps at most
    ``max_results_per_session`` (its own oldest goes first); when the app holds ``max_results``, a new result is
    refused with :class:`StoreFullError` rather than evicting a result another session may still be reading."""

    def __init__(self, settings: AppSettings):
        self.settings = settings
        self._items: dict[str, StoredResult] = {}
        self._lock = threading.Lock()

    def add(self, item: StoredResult) -> str:
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._expire()
            own = [key for key, stored in self._items.items() if stored.owner == item.owner]
            while own and len(own) >= self.settings.max_results_per_session:
                self._items.pop(own.pop(0))
            if len(self._items) >= self.settings.max_results:
                wait_s = min(self.settings.result_ttl_s - (time.time() - stored.created)
                             for stored in self._items.values())
                raise StoreFullError(f"the app holds its maximum of {self.settings.max_results} results of other "
                                     f"sessions; try again in {max(1, round(wait_s / 60))} min, when the oldest "
                                     "expires")
            self._items[token] = item
        return token

    def get(self, token: str, owner: str | None) -> StoredResult | None:
        with self._lock:
            self._expire()
            item = self._items.get(token)
        if item is None or owner is None or not secrets.compare_digest(item.owner, owner):
            return None  # another browser session's result is as absent as an unknown one
        return item

    def _expire(self) -> None:
        now = time.time()
        for token in [t for t, item in self._items.items() if now - item.created > self.settings.result_ttl_s]:
            self._items.pop(token)


#: A job's stages, in order, with what the progress page says of each.
JOB_STAGES = {"queued": "waiting for its turn", "reading": "reading the CT and the mask",
              "segmenting": "drawing the mask with the segmentation model", "checking": "checking the images",
              "features": "computing the tumor's and the liver's features", "scoring": "scoring with the models"}


@dataclass
class Job:
    """One prediction in the background: its uploads (in ``folder``), the form's values, its stage, and its
    result token or error once it ends."""
    token: str
    owner: str
    created: float
    values: dict[str, str]
    patient: dict[str, str]
    folder: Path
    uploads: dict[str, str]  # "ct"/"mask" -> the file name the user uploaded
    stage: str = "queued"
    result_token: str | None = None
    error: str | None = None
    status: int = 200
    #: Who asked, for the queue's fairness: the authenticated user, else the client's address.
    client: str = ""
    #: When the job began to run, and the time (epoch seconds) past which it is stopped.
    started: float | None = None
    deadline: float | None = None

    @property
    def ended(self) -> bool:
        return self.result_token is not None or self.error is not None

    def check_time(self) -> None:
        """Stop the job (:class:`JobTimeoutError`) once it runs past its deadline."""
        if self.deadline is not None and time.time() > self.deadline:
            raise JobTimeoutError(f"the prediction took longer than {self.deadline - (self.started or 0):.0f} s "
                                  "and was stopped; try again, or ask the administrator to raise the limit")


class JobTimeoutError(InputError):
    """A prediction that ran past the app's per-job time limit."""


class QueueFullError(InputError):
    """Every place in the prediction queue is taken."""


class SessionBusyError(InputError):
    """The session already has a prediction that has not ended."""

    def __init__(self, running: Job):
        super().__init__("a prediction for this browser is still running: wait for its result before the next")
        self.running = running


#: Predictions one client (an authenticated user, else a client address) may have running or waiting at once.
MAX_JOBS_PER_CLIENT = 2


class JobQueue:
    """The predictions of every session: at most ``max_jobs`` run at once (a thread pool), the others wait in the
    order they came; a session has one job at a time; ended jobs are kept until their lifetime passes."""

    def __init__(self, settings: AppSettings):
        self.settings = settings
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=settings.max_jobs, thread_name_prefix="hccrad-job")

    def submit(self, job: Job, work) -> None:
        """Queue ``job``; ``work(job)`` runs it. Refused when the queue is full or the session already has one."""
        with self._lock:
            self._expire()
            waiting = [j for j in self._jobs.values() if not j.ended]
            mine = next((j for j in waiting if j.owner == job.owner), None)
            if mine is not None:  # checked here, under the lock: two posts at once from one session
                raise SessionBusyError(mine)
            theirs = [j for j in waiting if job.client and j.client == job.client]
            if len(theirs) >= MAX_JOBS_PER_CLIENT:  # one running and one waiting, however many sessions
                raise QueueFullError(f"this computer (or user) already has {len(theirs)} predictions running or "
                                     "waiting, the most one may have; wait for one to finish")
            if len(waiting) >= self.settings.max_queued:
                raise QueueFullError(f"{len(waiting)} predictions are running or waiting, the most this app takes; "
                                     "try again in a few minutes")
            self._jobs[job.token] = job
        self._pool.submit(work, job)

    def running_for(self, owner: str) -> Job | None:
        """The session's job that has not ended, if any."""
        with self._lock:
            return next((j for j in self._jobs.values() if j.owner == owner and not j.ended), None)

    def get(self, token: str, owner: str | None) -> Job | None:
        with self._lock:
            job = self._jobs.get(token)
        if job is None or owner is None or not secrets.compare_digest(job.owner, owner):
            return None
        return job

    def ahead_of(self, job: Job) -> int:
        """How many queued jobs came before ``job`` (0 once it runs)."""
        with self._lock:
            if job.stage != "queued":
                return 0
            return sum(1 for other in self._jobs.values() if other.stage == "queued" and other.created < job.created)

    def forget(self, token: str) -> None:
        with self._lock:
            self._jobs.pop(token, None)

    def _expire(self) -> None:
        now = time.time()
        ttl = self.settings.result_ttl_s
        for token in [t for t, job in self._jobs.items() if job.ended and now - job.created > ttl]:
            self._jobs.pop(token)


def model_description(models: dict) -> dict[str, Any]:
    """What the page states about the models: names, hccrad version, training cohort and clinical levels."""
    first = next(iter(models.values()))
    spec = next((m.clinical_spec_ for m in models.values() if m.clinical_spec_), None)
    return {"names": list(models), "training": first.training_, "horizons": list(first.horizons_months),
            "treatments": list(dict.fromkeys([level for level in [(spec or {}).get("treatment_reference"),
                                                                  *((spec or {}).get("treatment_levels") or [])]
                                               if level]))}


def create_app(settings: AppSettings):
    """The FastAPI application for ``settings`` (models loaded once, read-only)."""
    from fastapi import FastAPI
    from fastapi.responses import HTMLResponse, RedirectResponse, Response
    from fastapi.staticfiles import StaticFiles
    from fastapi.templating import Jinja2Templates
    from starlette.concurrency import run_in_threadpool

    from hccrad import __version__
    from hccrad.survival import load_models

    models = load_models(settings.models_dir)
    if not models:
        raise InputError(f"no model artifact in {settings.models_dir}: give the models folder of `hccrad fit`")
    models_version = models_fingerprint(settings.models_dir)
    about = model_description(models)
    store = ResultStore(settings)
    queue = JobQueue(settings)
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    app = FastAPI(title="hccrad", docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    limit_bytes = int(settings.upload_limit_mb * 2**20)

    # Two files and the form's fields: the most a legitimate request carries.
    app.add_middleware(BodyLimit, max_bytes=limit_bytes * 2 + 2**20, timeout_s=settings.body_timeout_s)
    keys = SessionKeys()
    sessions = SessionClock(settings.session_idle_s, settings.session_lifetime_s)
    allowed_hosts = {name.lower() for name in (*LOOPBACK_HOSTS, *settings.allowed_hosts)}

    def page(request: Request, name: str, status: int = 200, **context) -> HTMLResponse:
        context.setdefault("patient", {})
        context.update(about=about, version=__version__, intended_use=INTENDED_USE, models_version=models_version,
                       limit_mb=settings.upload_limit_mb, segmentation=settings.segmentation_model is not None,
                       csrf=keys.csrf_token(request.state.session))
        return templates.TemplateResponse(request, name, context, status_code=status)

    def refusal(status: int, message: str, headers: dict | None = None) -> Response:
        return Response(f"{message}\n", status_code=status, media_type="text/plain", headers=headers)

    secure = settings.tls or settings.behind_proxy
    logins = LoginThrottle(settings.max_failed_logins, settings.lockout_s)

    @app.middleware("http")
    async def guard(request: Request, call_next):
        """Every request: a trusted Host, the password when one is set (failed logins throttled per client
        address), a server-issued session (a new one for an unknown or expired cookie), the origin of a POST, and
        the security headers on the response; nothing that carries patient data is cached."""
        host = _host_name(request.headers.get("host", ""))
        client = request.client.host if request.client else "unknown"
        locked = logins.locked_for(client) if settings.password is not None else 0.0
        if host not in allowed_hosts:  # the allowed names are not listed: they would tell a stranger the network
            response = refusal(400, "this app does not answer for this host name (its administrator lists the "
                                    "allowed names with hccrad serve --allowed-host)")
        elif locked > 0:
            response = refusal(429, f"too many wrong passwords from this address; try again in {locked:.0f} s",
                               {"Retry-After": str(int(locked) + 1)})
        elif settings.password is not None and not basic_auth_ok(request.headers.get("authorization"),
                                                                 settings.password):
            if request.headers.get("authorization"):
                logins.failed(client)
            response = refusal(401, "this app needs its password", {"WWW-Authenticate": 'Basic realm="hccrad"'})
        else:
            if settings.password is not None:
                logins.succeeded(client)
            request.state.session = sessions.current(keys.session_of(request.cookies.get(SESSION_COOKIE)))
            new_cookie = None
            if request.state.session is None:
                request.state.session, new_cookie = keys.new_cookie()
                sessions.start(request.state.session)
            request.state.new_session = new_cookie is not None
            reason = (cross_origin_reason(request.headers, request.headers.get("host", ""))
                      if request.method not in ("GET", "HEAD", "OPTIONS") else None)
            if reason is not None:
                log.warning("refused a cross-origin %s %s: %s", request.method, request.url.path, reason)
                response = refusal(403, f"refused: {reason}; open the app's own page to make a prediction")
            else:
                response = await call_next(request)
                if new_cookie is not None:
                    forwarded_https = request.headers.get("x-forwarded-proto", "").lower() == "https"
                    response.set_cookie(SESSION_COOKIE, new_cookie, httponly=True, samesite="strict",
                                        secure=settings.tls or (settings.behind_proxy and forwarded_https),
                                        max_age=int(settings.session_lifetime_s))
        for name, value in SECURITY_HEADERS.items():
            response.headers[name] = value
        if not request.url.path.startswith("/static/"):
            response.headers["Cache-Control"] = "no-store"  # pages, slices, reports: patient data
            response.headers["Pragma"] = "no-cache"
        if secure:
            response.headers["Strict-Transport-Security"] = "max-age=31536000"
        log.info("%s %s %s", request.method, request.url.path, response.status_code)  # never the query string
        return response

    @app.get("/", response_class=HTMLResponse)
    def form(request: Request):
        return page(request, "form.html", values={})

    @app.post("/predict")
    async def predict(request: Request):
        too_large = (f"the upload is larger than the limit of {settings.upload_limit_mb:.0f} MB per file")
        length = int(request.headers.get("content-length") or 0)
        if length > limit_bytes * 2 + 2**20:
            return page(request, "form.html", 413, values={}, error=too_large)
        try:
            form_data = await request.form(max_files=2, max_fields=20)
        except BodyTimeoutError:
            return page(request, "form.html", 408, values={}, error=f"the upload did not arrive within "
                                                                      f"{settings.body_timeout_s:.0f} s; try again")
        except BodyTooLargeError:
            return page(request, "form.html", 413, values={}, error=too_large)
        except Exception as exc:  # a malformed multipart body
            return page(request, "form.html", 400, values={}, error=f"the form could not be read: {exc}")
        if not request.state.new_session and not keys.csrf_ok(request.state.session, form_data.get("csrf")):
            # A session's form carries its token; a post in a session without it came from elsewhere.
            return page(request, "form.html", 403, values={}, error="the form has expired or came from another "
                                                                      "page: enter the patient again here")
        values = {name: str(form_data.get(name) or "").strip() for name, _ in CLINICAL_FIELDS}
        patient = {name: str(form_data.get(name) or "").strip()[:64] for name in ("patient_id", "accession")}
        patient["series"] = str(form_data.get("series") or "").strip()[:64]
        uploads = {name: form_data.get(name) for name in ("ct", "mask")}
        uploads = {k: v for k, v in uploads.items() if getattr(v, "filename", "")}
        if not uploads:  # the clinical model alone takes milliseconds: it never waits behind image jobs
            try:
                job = await run_in_threadpool(_accept, models, settings, values, patient, {}, limit_bytes,
                                              request.state.session)
            except InputError as exc:
                return page(request, "form.html", 400, values=values, patient=patient,
                            error=present.form_words(str(exc)))
            await run_in_threadpool(_run_job, job, models, settings, store)
            if job.result_token is None:
                return page(request, "form.html", job.status, values=values, patient=patient, error=job.error)
            return RedirectResponse(f"/result/{job.result_token}", status_code=303)
        running = queue.running_for(request.state.session)
        if running is not None:  # before reading the uploads; submit checks again under its lock
            busy = SessionBusyError(running)
            return page(request, "form.html", 409, values=values, patient=patient, running=running.token,
                        error=str(busy))
        try:
            job = await run_in_threadpool(_accept, models, settings, values, patient, uploads, limit_bytes,
                                          request.state.session)
        except InputError as exc:
            return page(request, "form.html", 400, values=values, patient=patient,
                        error=present.form_words(str(exc)))
        job.client = request.client.host if request.client else ""
        try:
            queue.submit(job, lambda one: _run_job(one, models, settings, store))
        except SessionBusyError as exc:
            _discard(job)
            return page(request, "form.html", 409, values=values, patient=patient, running=exc.running.token,
                        error=str(exc))
        except QueueFullError as exc:
            _discard(job)
            return page(request, "form.html", 503, values=values, patient=patient, error=str(exc))
        return RedirectResponse(f"/job/{job.token}", status_code=303)  # a first direct post gets its cookie here

    @app.get("/job/{token}", response_class=HTMLResponse)
    def job_page(request: Request, token: str):
        job = None if request.state.new_session else queue.get(token, request.state.session)
        if job is None:
            return page(request, "form.html", 404, values={}, error="no such prediction in this browser session")
        if job.result_token is not None:
            return RedirectResponse(f"/result/{job.result_token}", status_code=303)
        if job.error is None and job.deadline is not None and time.time() > job.deadline:
            job.error, job.status = (f"the prediction took longer than {settings.job_time_limit_s:.0f} s and was "
                                     "stopped; try again, or ask the administrator to raise the limit"), 504
        if job.error is not None:
            queue.forget(token)
            return page(request, "form.html", job.status, values=job.values, patient=job.patient, error=job.error)
        stages = [name for name in JOB_STAGES if name != "segmenting" or settings.segmentation_model is not None]
        return page(request, "progress.html", job=job, stages=stages, stage_words=JOB_STAGES,
                    ahead=queue.ahead_of(job), max_jobs=settings.max_jobs)

    def _owned(request: Request, token: str) -> StoredResult | None:
        return None if request.state.new_session else store.get(token, request.state.session)

    @app.get("/result/{token}", response_class=HTMLResponse)
    def result_page(request: Request, token: str):
        stored = _owned(request, token)
        if stored is None:
            return page(request, "form.html", 404, values={}, error="no such result in this browser session "
                                                                     "(results expire, and belong to their session)")
        rows = _rows(stored, settings.primary_model)
        return page(request, "result.html", token=token, item=stored, rows=rows, primary=settings.primary_model,
                    why=present.why_models_differ([row["model"] for row in rows], settings.primary_model),
                    start_slice=stored.stack.tumor_center_slice() if stored.stack else 0,
                    window=render.WINDOW_HU)

    @app.get("/result/{token}/slice/{index}.png")
    def slice_image(request: Request, token: str, index: int):
        stored = _owned(request, token)
        if stored is None or stored.stack is None:
            return Response(status_code=404)
        return Response(render.slice_png(stored.stack, index), media_type="image/png")

    @app.get("/result/{token}/report.html", response_class=HTMLResponse)
    def report(request: Request, token: str):
        stored = _owned(request, token)
        if stored is None:
            return Response(status_code=404)
        slices = []
        if stored.stack is not None:
            center = stored.stack.tumor_center_slice()
            for index in sorted({max(0, center - 3), center, min(stored.stack.n_slices - 1, center + 3)}):
                slices.append((index, render.png_data_uri(render.slice_png(stored.stack, index))))
        rows = _rows(stored, settings.primary_model)
        response = templates.TemplateResponse(request, "report.html", {
            "item": stored, "rows": rows, "slices": slices, "about": about, "version": __version__,
            "primary": settings.primary_model, "window": render.WINDOW_HU,
            "why": present.why_models_differ([row["model"] for row in rows], settings.primary_model),
            "intended_use": INTENDED_USE, "models_version": models_version,
            "created": time.strftime("%Y-%m-%d %H:%M %Z (UTC%z)", time.localtime(stored.created)),
            "printed": time.strftime("%Y-%m-%d %H:%M %Z (UTC%z)")})
        response.headers["Content-Disposition"] = 'attachment; filename="hccrad-patient-report.html"'
        return response

    return app


def models_fingerprint(models_dir: Path) -> str:
    """The models' version as the page and report print it: the first 12 hex digits of the SHA-256 over the
    artifacts' own checksums, in name order (it changes when any model is refitted)."""
    import json

    digest = hashlib.sha256()
    for path in sorted(Path(models_dir).glob("*.json")):
        try:
            checksum = json.loads(path.read_text()).get("checksum", {}).get("value", "")
        except (OSError, ValueError, AttributeError):
            continue
        digest.update(f"{path.name}:{checksum}".encode())
    return digest.hexdigest()[:12]


def _rows(stored: StoredResult, primary: str = present.PRIMARY_MODEL) -> list[dict[str, Any]]:
    """One record per scored model for the templates, the primary model first: the numbers, percentages, the
    warnings, what the risk group means, an id-safe slug and the survival rows."""
    rows = []
    predictions = stored.result.predictions
    for name in present.ordered_models(list(predictions), primary):
        prediction = predictions[name]
        record = prediction.to_record()
        record["slug"] = name.replace("&", "_")
        record["primary"] = name == primary
        record["survival"] = [{**row, "pfs_text": present.percent(row["pfs"]),
                               "low_text": present.percent(row["ci_low"]), "high_text": present.percent(row["ci_high"])}
                              for row in prediction.survival.to_dict(orient="records")]
        record["outside_domain"] = bool(prediction.outside_domain)
        record["group_text"] = present.group_text(prediction)
        record["extrapolation"] = prediction.extrapolation
        record["warnings"] = prediction.warnings()
        record["group_meaning"] = present.group_meaning(prediction)
        record["contributions"] = stored.contributions.get(name, [])
        rows.append(record)
    return rows


def _clinical_from_form(values: dict[str, str], needed: bool) -> dict[str, str]:
    """The factors entered (empty ones left out); all four are required when a model uses them."""
    missing = [label for name, label in CLINICAL_FIELDS if not values.get(name)]
    if missing and needed:
        raise UploadError(f"missing clinical factor(s): {', '.join(missing)}; the models need all four "
                          "(AFP in ng/mL, Child-Pugh grade or score, BCLC stage, treatment)")
    return {name: value for name, value in values.items() if value}


def _accept(models: dict, settings: AppSettings, values: dict[str, str], patient: dict[str, str], uploads: dict,
            limit_bytes: int, owner: str) -> Job:
    """What the post itself checks before queueing: the clinical factors (read by the manifest's rules) and which
    files came; the uploads are saved to a private folder that the job deletes when it ends."""
    from hccrad.pipeline.predict import patient_row

    needs_clinical = any(m.clinical_spec_ for m in models.values())
    clinical = _clinical_from_form(values, needs_clinical)
    patient_row("patient", clinical)  # a typed value the models would refuse is refused now, in the form's words
    trained = model_description(models)["treatments"]
    if clinical.get("treatment") and trained and clinical["treatment"] not in trained:
        raise UploadError(f"treatment {clinical['treatment']!r} is not one the models were trained on; choose one of "
                          f"{', '.join(trained)}")
    suffixes = {key: image_suffix(upload.filename) for key, upload in uploads.items()}  # a wrong type first
    if suffixes.get("mask") == ".zip":
        raise UploadError("the mask must be one image file (NIfTI, NRRD or MHA), not a zip")
    if patient.get("series") and suffixes.get("ct") != ".zip":
        raise UploadError("a series was named, but the CT is not a zip of DICOM series: leave the Series field "
                          "empty, or upload the zip")
    if "mask" in uploads and "ct" not in uploads:
        raise UploadError("a mask was given without its CT")
    if "ct" in uploads and "mask" not in uploads and settings.segmentation_model is None:
        raise UploadError("give the CT's mask (labels 1 liver, 2 tumor, 3 portal vein), or leave out the CT "
                          "to use the clinical model alone")
    folder = Path(tempfile.mkdtemp(prefix="hccrad-upload-"))
    try:
        names = {}
        for key, what in (("ct", "the CT"), ("mask", "the mask")):
            if key in uploads:
                save_limited(uploads[key].file, folder / f"{key}{suffixes[key]}", limit_bytes, what)
                names[key] = uploads[key].filename
    except BaseException:
        _remove(folder)
        raise
    return Job(secrets.token_urlsafe(24), owner, time.time(), values, patient, folder, names)


def _remove(folder: Path) -> None:
    import shutil

    shutil.rmtree(folder, ignore_errors=True)


def _discard(job: Job) -> None:
    _remove(job.folder)


def _run_job(job: Job, models: dict, settings: AppSettings, store: ResultStore) -> None:
    """The job's work in a pool thread: predict, keep the result for the session, always delete the uploads."""
    job.started = time.time()
    job.deadline = job.started + settings.job_time_limit_s

    def stage(name: str) -> None:
        job.check_time()
        job.stage = name

    try:
        stored = _predict(models, settings, job, stage)
        job.check_time()
        if job.ended:  # stopped by its deadline while it ran: the late result is not shown
            return
        job.result_token = store.add(stored)
    except StoreFullError as exc:
        job.error, job.status = str(exc), 503
    except InputError as exc:
        job.error, job.status = present.form_words(str(exc)), 400
    except Exception as exc:  # never a traceback on the page; the log keeps it
        log.exception("prediction failed")
        job.error, job.status = f"the prediction failed ({type(exc).__name__}: {exc})", 500
    finally:
        _discard(job)


def _predict(models: dict, settings: AppSettings, job: Job, stage) -> StoredResult:
    """Predict from the job's saved uploads and keep the viewer's slices."""
    from hccrad.io.images import read_image, read_mask
    from hccrad.pipeline.predict import patient_row, predict_new_patient, survival_curve

    needs_clinical = any(m.clinical_spec_ for m in models.values())
    clinical = _clinical_from_form(job.values, needs_clinical)
    folder = job.folder
    uploads = {key: next(folder.glob(f"{key}.*")) for key in job.uploads}
    ct_path, mask_path = uploads.get("ct"), uploads.get("mask")
    orientation = {}
    series = ""
    try:
        if ct_path is not None and ct_path.suffix == ".zip":
            stage("reading")
            unpacked = folder / "dicom"
            unpacked.mkdir()
            chosen = extract_series(ct_path, unpacked, int(settings.upload_limit_mb * 2**20),
                                    job.patient.get("series") or None)
            ct_path, series = chosen.folder, chosen.describe()
        result = predict_new_patient(models, clinical, ct_path, mask_path, "patient", settings.segmentation_model,
                                     drawn_mask=folder / "drawn_mask.nii.gz", progress=stage,
                                     out_of_domain=settings.out_of_domain)
        stack = None
        if ct_path is not None:
            image = read_image(ct_path)
            shown = result.mask  # the uploaded mask, or the one the segmentation model drew
            stack = render.SliceStack.from_images(image, read_mask(shown, image) if shown else None)
            orientation = present.orientation_labels(image.GetDirection())
    except InputError as exc:
        raise UploadError(_name_uploads(str(exc), folder, job.uploads)) from exc
    row = patient_row("patient", clinical, result.features)
    curves = {name: survival_curve(models[name], row) for name in result.predictions}
    horizons = list(next(iter(models.values())).horizons_months)
    figures = {"pfs": render.pfs_curve_svg(curves, horizons, settings.primary_model)}
    contributions = {}
    for name, prediction in result.predictions.items():
        model = models[name]
        if model.training_risk_percentiles_ is not None:
            figures[f"distribution_{name}"] = render.risk_distribution_svg(
                model.training_risk_percentiles_, prediction.risk_score, prediction.cutoff, name)
        contributions[name] = present.contribution_lines(model, prediction)
        figures[f"contributions_{name}"] = render.contributions_svg(contributions[name], name)
    spec = next((m.clinical_spec_ for m in models.values() if m.clinical_spec_), None)
    cutoff = spec.get("afp_cutoff_ng_ml") if spec else None
    return StoredResult(job.owner, time.time(), result, parsed_clinical(clinical, cutoff), stack, figures,
                        job.patient,
                        contributions, orientation, series)


def parsed_clinical(clinical: dict[str, str], afp_cutoff: float | None = None) -> dict[str, str]:
    """The clinical factors as the models read them, for the page and the printable report: the parsed value
    (``520`` for ``520,0``; a Child-Pugh score with its grade), never the text typed; ``afp_category`` says on
    which side of the models' cut-off the value lies (``>= 400 ng/mL``)."""
    from hccrad.io.manifest import parse_clinical_inputs

    clean, _errors, _unreadable = parse_clinical_inputs(clinical)
    shown = {}
    if clean["afp"] is not None:
        shown["afp"] = f"{clean['afp']:g}"
        if afp_cutoff is not None:
            shown["afp_category"] = f"{'>=' if clean['afp'] >= afp_cutoff else '<'} {afp_cutoff:g} ng/mL"
    if clean["child_pugh"] is not None:
        score = clean["child_pugh_score"]
        shown["child_pugh"] = clean["child_pugh"] + (f" (score {score})" if score is not None else "")
    for name in ("bclc", "treatment"):
        if clean[name] is not None:
            shown[name] = str(clean[name])
    return shown


def _name_uploads(message: str, folder: Path, uploads: dict[str, str]) -> str:
    """The message with the private upload paths replaced by the names of the files the user uploaded."""
    names = {"ct": "CT", "mask": "mask"}
    for key, filename in uploads.items():
        for path in sorted(folder.glob(f"{key}*"), key=lambda p: -len(str(p))):
            message = message.replace(str(path), f"uploaded {names[key]} '{filename}'")
    message = message.replace(str(folder / "dicom"), f"uploaded CT '{uploads['ct']}'" if "ct" in uploads
                              else "upload")
    return message.replace(str(folder) + "/", "").replace(str(folder), "upload")


class ServeError(InputError):
    """A way of serving the app that would be unsafe (the message says how to do it safely)."""


#: A password shorter than this is refused (a random one of 24 bytes, base64: 32 characters).
MIN_PASSWORD_LENGTH = 16
PASSWORD_REMEDY = "make one with `openssl rand -base64 24 > pw && chmod 600 pw`"


def check_password_file(path: Path) -> str:
    """The password in ``path``, refused (:class:`ServeError`, naming the remedy) when the file can be read by its
    group or by others, or the password is shorter than :data:`MIN_PASSWORD_LENGTH`."""
    import stat

    try:
        mode = path.stat().st_mode
        password = path.read_text().strip()
    except OSError as exc:
        raise ServeError(f"cannot read the password file {path}: {exc.strerror}") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ServeError(f"the password file {path} can be read by other users (mode {stat.filemode(mode)}): "
                         f"`chmod 600 {path}`")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ServeError(f"the password in {path} has {len(password)} characters; at least {MIN_PASSWORD_LENGTH} "
                         f"are needed: {PASSWORD_REMEDY}")
    return password


def serve_settings(settings: AppSettings, host: str) -> AppSettings:
    """``settings`` for binding ``host``: the bound name joins the trusted hosts, and an address other computers
    can reach needs a password and TLS, here (``--tls-cert``) or at a reverse proxy (``--behind-proxy``)
    (:class:`ServeError` otherwise, saying how)."""
    if not is_loopback(host) and settings.password is None:
        raise ServeError(f"binding {host} lets other computers reach the app, so it needs a password and TLS: "
                         f"{PASSWORD_REMEDY}, give --password-file pw, and either --tls-cert CERT --tls-key KEY or "
                         "--behind-proxy when a TLS reverse proxy serves it (docs/new-patient.md, 'Deploying on a "
                         "hospital network')")
    if not is_loopback(host) and not (settings.tls or settings.behind_proxy):
        raise ServeError(f"binding {host} would send the password and patient data over plain HTTP: give "
                         "--tls-cert CERT --tls-key KEY, or --behind-proxy when a TLS reverse proxy serves it "
                         "(docs/new-patient.md, 'Deploying on a hospital network')")
    extra = () if host in ("0.0.0.0", "::") else (host,)
    return AppSettings(**{**settings.__dict__, "allowed_hosts": (*settings.allowed_hosts, *extra)})


#: Seconds an idle keep-alive connection stays open.
KEEP_ALIVE_TIMEOUT_S = 5


def serve(settings: AppSettings, host: str = "127.0.0.1", port: int = 8000, tls_cert: Path | None = None,
          tls_key: Path | None = None, trusted_proxies: tuple[str, ...] = ()) -> None:
    """Run the app with uvicorn (blocking), after :func:`serve_settings`: TLS from ``tls_cert``/``tls_key``,
    forwarded headers believed only from ``trusted_proxies``, idle connections closed after
    :data:`KEEP_ALIVE_TIMEOUT_S`, and uvicorn's access log (which writes query strings) off: the app logs each
    request's method, path and status itself."""
    import uvicorn

    app = create_app(serve_settings(settings, host))
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=False,
                ssl_certfile=str(tls_cert) if tls_cert else None, ssl_keyfile=str(tls_key) if tls_key else None,
                proxy_headers=bool(trusted_proxies), forwarded_allow_ips=",".join(trusted_proxies) or "",
                timeout_keep_alive=KEEP_ALIVE_TIMEOUT_S, limit_concurrency=64)
