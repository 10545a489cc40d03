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

    def to_dict(self) -> dict:
        body = {"error": self.kind, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body

    @classmethod
    def from_dict(cls, body: dict, status: int) -> "TrainMLError":
        """Rebuild the error the server sent, so the SDK raises the same class the server raised."""
        kind = body.get("error", "error") if isinstance(body, dict) else "error"
        message = body.get("message") if isinstance(body, dict) else None
        details = body.get("details") if isinstance(body, dict) else None
        klass = _BY_KIND.get(kind)
        if klass is None:
            klass = _BY_STATUS.get(status, ServerError)
        return klass(message or f"server answered HTTP {status}", details=details)


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

    def to_dict(self) -> dict:
        body = super().to_dict()
        if self.fields:
            body["fields"] = [f.to_dict() for f in self.fields]
        return body

    @classmethod
    def at(cls, loc: Loc, message: str, *, label: str | None = None) -> "UsageError":
        """One problem in one field: `LABEL: message`, the label being the field's name unless a reader knows it
        better by another (`job name`, `--credential aws`)."""
        return cls(f"{label or field_name(loc)}: {message}", fields=[FieldProblem(tuple(loc), message)] if loc else [])

    @classmethod
    def of(cls, problems: list[tuple[Loc, str]]) -> "UsageError":
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
    def of(cls, found: list[tuple[int | None, str, Loc, str]]) -> "RouteSpecError":
        """From (route index or None, route label, location in the route, message): the sentence and the data
        from one source."""
        lines = [": ".join(part for part in (label, field_name(loc), message) if part) for _, label, loc, message in found]
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


class WaitTimeout(TrainMLError):
    exit_code = 1
    http_status = 504
    kind = "timeout"


class ModelCodeError(TrainMLError):
    """User model code could not be loaded (missing file or function, import error)."""

    exit_code = 1
    http_status = 422
    kind = "model_code"


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
    )
}
# RouteSpecError takes a list of problems; rebuilt from the wire it is a plain UsageError with details.
_BY_KIND["invalid_route"] = UsageError
_BY_STATUS = {401: Unauthorized, 404: NotFound, 409: Conflict, 413: TooLarge, 422: UsageError, 400: UsageError,
              503: Unavailable}
