"""Exception text for logs and error records, built without SQL statement parameters.

SQLAlchemy writes a failed statement's parameters into the exception text
(``[parameters: ('alice@example.com', ...)]``) unless the engine was built with
``hide_parameters=True``. Every engine made by :class:`ballast_common.db.DB` is; an
exception raised through any other engine (a library's, a one-off script's, Alembic's)
must not put user data into a log either, so log text is always made with the
parameters hidden, whatever the engine said.

SQLAlchemy is looked up in ``sys.modules`` rather than imported: a process that never
loaded it (the ui) cannot hold one of its exceptions, and should not pay for the import.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]


def _chain(err: BaseException) -> Iterator[BaseException]:
    """The exception, its causes and contexts, and the members of exception groups."""
    seen: set[int] = set()
    stack = [err]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        yield node
        for linked in (node.__cause__, node.__context__):
            if linked is not None:
                stack.append(linked)
        if isinstance(node, BaseExceptionGroup):
            stack.extend(node.exceptions)


@contextmanager
def parameters_hidden(err: BaseException) -> Iterator[None]:
    """Hide the statement parameters of every SQLAlchemy error in ``err``'s chain.

    Restored on exit: the caller's exception is left as it was.
    """
    sa_exc: Any = sys.modules.get("sqlalchemy.exc")
    if sa_exc is None:
        yield
        return
    shown = [
        node
        for node in _chain(err)
        if isinstance(node, sa_exc.StatementError) and not node.hide_parameters
    ]
    for node in shown:
        node.hide_parameters = True
    try:
        yield
    finally:
        for node in shown:
            node.hide_parameters = False


def exception_message(err: BaseException) -> str:
    """``str(err)`` without statement parameters (never raises)."""
    with parameters_hidden(err):
        try:
            return str(err)
        except Exception:
            return f"<unprintable {type(err).__name__} object>"


def format_exception(err: BaseException) -> str:
    """The full traceback of ``err`` (chained causes included), without parameters."""
    with parameters_hidden(err):
        return "".join(traceback.format_exception(type(err), err, err.__traceback__))


def format_exc_info(exc_info: ExcInfo) -> str:
    """:func:`format_exception` for an ``exc_info`` tuple (structlog's renderer hook)."""
    return format_exception(exc_info[1])
