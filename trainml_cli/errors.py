"""One exception root for every failure a user should see.

Each subclass carries the exit code the CLI uses and the HTTP status the control plane answers with, so the
CLI edge and the API edge render the same error without a mapping table of their own. Library code raises
these and never prints or exits.
"""

from __future__ import annotations

from dataclasses import dataclass

Loc = tuple  # where in a request, as data: ("resources", "cpu_count"), ("environment", "packages", "pip", 2)


def field_name(loc: Loc) -> str:
    """A location as messages and the API's `field` write it: ("body", 0, "type") -> "body[0].type"."""
    name = ""
    for part in loc:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name


def parse_field(name: str) -> Loc:
    """A location back from its name, as a client reads the API's `field`: "body[0].type" -> ("body", 0, "type")."""
    loc: list = []
    for part in name.replace("[", ".[").split("."):
        if part.startswith("[") and part.endswith("]") and part[1:-1].isdigit():
            loc.append(int(part[1:-1]))
        elif part:
            loc.append(part)
    return tuple(loc)


@dataclass(frozen=True)
class FieldProblem:
    """One problem and where it is: the location as data, the message without it (what a form shows beside its
    input). `route` is the route's index for a problem inside a route (loc is then relative to that route)."""

    loc: Loc
    message: str
    route: int | None = None

    @property
    def field(self) -> str:
        return field_name(self.loc)

    def to_dict(self) -> dict:
        return {"field": self.field, "message": self.message}


class TrainMLError(Exception):
    """Root of all user-facing failures: one clear message, an exit code and an HTTP status."""

    exit_code = 1
    http_status = 500
    kind = "error"

    def __init__(self, message: str, *, details: list[str] | None = None):
        super().__init__(message)
        self.message = message
        self.details = list(details or [])

    def __str__(self) -> str:
        return self.message

    @property
    def status(self) -> int:
        """trainML's ApiError.status: the HTTP status (404 for a job or model that is not there)."""
        return self.http_status

    def to_dict(self) -> dict:
        body = {"error": self.kind, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body

    @classmethod
    def from_dict(cls, body: dict, status: int, where: str = "") -> TrainMLError:
        """Rebuild the error a server (the control plane or an endpoint) sent, so the SDK raises the class the
        server meant: by its kind, else by its HTTP status. `where` prefixes the message ("POST /predict: ...")."""
        body = body if isinstance(body, dict) else {}
        klass = _BY_KIND.get(body.get("error")) or _BY_STATUS.get(status, ServerError)
        message = klass._message(str(body.get("message") or f"server answered HTTP {status}"), body)
        return klass._rebuilt(f"{where}: {message}" if where else message, body)

    @classmethod
    def _message(cls, message: str, body: dict) -> str:
        return message

    @classmethod
    def _rebuilt(cls, message: str, body: dict) -> TrainMLError:
        details = body.get("details")
        return cls(message, details=details if isinstance(details, list) else None)


class UsageError(TrainMLError):
    """The user asked for something malformed: bad options, bad JSON, a route that breaks the spec.

    `fields` says where, as data (FieldProblem: location and message), when the problem is in a field of a
    request; the API sends it as `"fields": [{"field", "message"}]` and the dashboard puts each message beside
    its input from the location, never by reading the sentence back. Raise such errors with `at` or `of`,
    which write the sentence from the same data."""

    exit_code = 2
    http_status = 422
    kind = "invalid"

    def __init__(self, message: str, *, details: list[str] | None = None, fields: list[FieldProblem] | None = None):
        super().__init__(message, details=details)
        self.fields = list(fields or [])

    @property
    def attribute(self) -> str | None:
        """trainML's SpecificationError.attribute: the first field named, if any."""
        return self.fields[0].field if self.fields else None

    def to_dict(self) -> dict:
        body = super().to_dict()
        if self.fields:
            body["fields"] = [f.to_dict() for f in self.fields]
        return body

    @classmethod
    def _rebuilt(cls, message: str, body: dict) -> UsageError:
        error = super()._rebuilt(message, body)
        error.fields = [FieldProblem(parse_field(item["field"]), str(item.get("message", "")), item.get("route"))
                        for item in _items(body.get("fields")) if isinstance(item.get("field"), str)]
        return error

    @classmethod
    def at(cls, loc: Loc, message: str, *, label: str | None = None) -> UsageError:
        """One problem in one field: `LABEL: message`, the label being the field's name unless a reader knows it
        better by another (`job name`, `--credential aws`)."""
        return cls(f"{label or field_name(loc)}: {message}", fields=[FieldProblem(tuple(loc), message)] if loc else [])

    @classmethod
    def of(cls, problems: list[tuple[Loc, str]]) -> UsageError:
        """Several problems at once, one line each (the dashboard shows every one beside its field)."""
        lines = [f"{field_name(loc)}: {message}" for loc, message in problems]
        return cls("\n".join(lines), details=lines, fields=[FieldProblem(tuple(loc), m) for loc, m in problems])


class RouteSpecError(UsageError):
    """One or more routes break the route spec; `details` holds one line per cause, and `fields` the same causes
    as data (FieldProblem with `route`, the 0-based index or None, and a location inside that route, () for the
    route as a whole). The API sends {"route", "field": "body[1].default_value" or "", "message"}."""

    kind = "invalid_route"

    def __init__(self, problems: list[str], *, fields: list[FieldProblem] | None = None):
        message = problems[0] if len(problems) == 1 else "\n".join(problems)
        super().__init__(message, details=problems,
                         fields=fields if fields is not None else [FieldProblem((), p) for p in problems])
        self.problems = problems

    def to_dict(self) -> dict:
        return {**super().to_dict(), "fields": [{"route": f.route, **f.to_dict()} for f in self.fields]}

    @classmethod
    def of(cls, found: list[tuple[int | None, str, Loc, str]]) -> RouteSpecError:
        """From (route index or None, route label, location in the route, message): the sentence and the data
        from one source."""
        lines = [": ".join(part for part in (label, field_name(loc), message) if part)
                 for _, label, loc, message in found]
        return cls(lines, fields=[FieldProblem(tuple(loc), message, index) for index, _, loc, message in found])


class TooLarge(UsageError):
    """A request body over the size its receiver takes (413); the same kind as an endpoint's 413."""

    http_status = 413
    kind = "body_too_large"


class NotFound(TrainMLError):
    exit_code = 1
    http_status = 404
    kind = "not_found"


class Conflict(TrainMLError):
    """The request clashes with the current state (an illegal status move, an ambiguous name)."""

    exit_code = 1
    http_status = 409
    kind = "conflict"


class Ambiguous(Conflict):
    """A name that several jobs share: the user must say which (an id), so it is a usage error (exit 2)."""

    exit_code = 2
    kind = "ambiguous"


class Unauthorized(TrainMLError):
    exit_code = 1
    http_status = 401
    kind = "unauthorized"


class ServerError(TrainMLError):
    exit_code = 1
    http_status = 500
    kind = "server_error"


class Unavailable(TrainMLError):
    """The control plane or an endpoint cannot be reached or is overloaded; retrying later may help."""

    exit_code = 1
    http_status = 503
    kind = "unavailable"


class JobFailed(TrainMLError):
    exit_code = 1
    http_status = 409
    kind = "job_failed"
    status = "failed"  # trainML's JobError.status: the job's status


class RevisionFailed(JobFailed):
    """A new revision of a job (an update or a rollback) did not take over; the serving one goes on."""

    kind = "revision_failed"


class WaitTimeout(TrainMLError):
    exit_code = 1
    http_status = 504
    kind = "timeout"


class ModelCodeError(TrainMLError):
    """User model code could not be loaded (missing file or function, import error)."""

    exit_code = 1
    http_status = 422
    kind = "model_code"


# What an endpoint answers besides the classes above (401 Unauthorized, 404 NotFound, 413 TooLarge): the runtime
# writes these kinds, and the SDK raises these classes from an endpoint's answers (job.call). Each subclasses
# what callers caught before these existed, so those `except` clauses still hold.


class InvalidRequest(UsageError):
    """An endpoint refused a call's body or query (422); `fields` says where, from the answer's `detail`
    (pydantic-shaped: [{"loc": ["body", "n"], "msg": ...}])."""

    kind = "invalid_request"

    @classmethod
    def _rebuilt(cls, message: str, body: dict) -> InvalidRequest:
        error = super()._rebuilt(message, body)
        error.fields += [FieldProblem(tuple(item["loc"]), str(item.get("msg", "")))
                         for item in _items(body.get("detail")) if isinstance(item.get("loc"), list)]
        return error


class MethodNotAllowed(UsageError):
    http_status = 405
    kind = "method_not_allowed"


class UnsupportedMediaType(UsageError):
    """A body not sent as JSON (415)."""

    http_status = 415
    kind = "unsupported_media_type"


class HeadersTooLarge(TooLarge):
    """The request line and headers past the server's bound (431)."""

    http_status = 431
    kind = "headers_too_large"


class ModelError(ServerError):
    """The model's function raised (500); `type` is its exception's type name, as the message starts."""

    kind = "model_error"

    def __init__(self, message: str, *, details: list[str] | None = None, type: str | None = None):
        super().__init__(message, details=details)
        self.type = type

    @classmethod
    def _message(cls, message: str, body: dict) -> str:
        return f"{body['type']}: {message}" if isinstance(body.get("type"), str) else message

    @classmethod
    def _rebuilt(cls, message: str, body: dict) -> ModelError:
        error = super()._rebuilt(message, body)
        error.type = body.get("type") if isinstance(body.get("type"), str) else None
        return error


class CallTimeout(WaitTimeout):
    """A call ran past the endpoint's timeout (504); the function may still be running there. A WaitTimeout,
    as the SDK raised for it before this class: waiting for an answer that did not come in time."""

    kind = "timeout"


class Overloaded(Unavailable):
    """The endpoint is at capacity (503, after the SDK's retries): every slot running, the queue full."""

    kind = "overloaded"


class NotReady(Unavailable):
    """The endpoint's model code is still loading (503, after the SDK's retries)."""

    kind = "loading"


def _items(value) -> list[dict]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


# By kind, the last class listed wins: CallTimeout, after WaitTimeout (which never crosses the wire), is "timeout".
_BY_KIND = {
    klass.kind: klass
    for klass in (
        TrainMLError,
        UsageError,
        TooLarge,
        NotFound,
        Conflict,
        Ambiguous,
        Unauthorized,
        ServerError,
        Unavailable,
        JobFailed,
        WaitTimeout,
        ModelCodeError,
        InvalidRequest,
        MethodNotAllowed,
        UnsupportedMediaType,
        HeadersTooLarge,
        ModelError,
        CallTimeout,
        Overloaded,
        NotReady,
    )
}
# RouteSpecError takes a list of problems; rebuilt from the wire it is a plain UsageError with details and fields.
_BY_KIND["invalid_route"] = UsageError
_BY_STATUS = {400: UsageError, 401: Unauthorized, 404: NotFound, 405: MethodNotAllowed, 409: Conflict, 413: TooLarge,
              415: UnsupportedMediaType, 422: UsageError, 431: HeadersTooLarge, 503: Unavailable, 504: CallTimeout}
