"""The ``verify_route`` decorator: a 2xx answer from the app's verify view marks the OTP verified."""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from flask import Request, current_app, request
from werkzeug.sansio.response import Response as BaseResponse

from .signals import otp_verified

if TYPE_CHECKING:
    from .extension import OTPConversion

F = TypeVar("F", bound=Callable[..., Any])
#: A request field name, or a callable (no arguments, inside the request) returning the value.
FieldSource = str | Callable[[], Any]


def _read(req: Request, source: FieldSource) -> Any:
    if callable(source):
        return source()
    data = req.get_json(silent=True)  # None unless the body is JSON; parsed once per request, then cached
    if isinstance(data, dict) and source in data:
        return data[source]
    return req.form.get(source)


def _status(rv: Any) -> int | None:
    """The status Flask will answer ``rv`` with, where that is certain without building the response: a response
    object, or ``(response, int status)``. None otherwise. ``app.make_response`` costs ~8 µs of every verify
    request, and Flask makes the response once more after the view."""
    if isinstance(rv, tuple):
        if len(rv) == 2 and type(rv[1]) is int and isinstance(rv[0], BaseResponse):
            return rv[1]
        return None
    if isinstance(rv, BaseResponse):
        return rv.status_code
    return None


def make_verify_route(
    ext: OTPConversion, phone: FieldSource, message_id: FieldSource | None
) -> Callable[[F], F]:
    def after_view(rv: Any) -> Any:
        status = _status(rv)
        if status is None:  # any other answer: Flask's own conversion, whose errors are the app's as before
            rv = current_app.make_response(rv)
            status = rv.status_code
        if 200 <= status < 300:
            # Nothing here may change the view's answer: bad values are logged by the receiver and dropped.
            try:
                req = request._get_current_object()  # type: ignore[attr-defined]
                phone_value = _read(req, phone)
                id_value = None if message_id is None else _read(req, message_id)
            except Exception:
                ext.logger.exception("flask-otp-conversion: could not read the verify request's fields")
            else:
                app = current_app._get_current_object()  # type: ignore[attr-defined]
                otp_verified.send(app, phone=phone_value, message_id=id_value, verified_at=time.time())
        return rv

    def decorator(view: F) -> F:
        if inspect.iscoroutinefunction(view):

            @functools.wraps(view)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                return after_view(await view(*args, **kwargs))

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return after_view(view(*args, **kwargs))

        return wrapper  # type: ignore[return-value]

    return decorator
