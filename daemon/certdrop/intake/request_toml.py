"""``NAME.request.toml`` drops: the same request as ``certdrop csr NAME``, asked by file.

Intake hands every drop whose name ends in ``.request.toml`` to the hook made by
:func:`on_request`. An accepted request is an entry ``requested`` plus ``outbox/NAME.csr``;
a rejected one ends in ``inbox/rejected/`` with code ``invalid_request`` and every problem
in its reason, so the sender fixes the file in one round trip.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable

from certdrop.clock import iso
from certdrop.errors import InvalidRequest, Rejection
from certdrop.intake.pipeline import REQUEST_SUFFIX, Intake
from certdrop.intake.request import checked_request, create_request
from certdrop.intake.work import Outcome
from certdrop.pki.csr import RequestFields


def fields_from_toml(data: bytes) -> RequestFields:
    """Read the fields of a ``NAME.request.toml`` file (UTF-8, a BOM allowed); every
    problem, including a TOML syntax error, is raised as one ``InvalidRequest``."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        table = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise InvalidRequest(["the file is not UTF-8 text; save it as UTF-8"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise InvalidRequest([f"the file is not valid TOML: {exc}"]) from None
    return RequestFields.from_mapping(table)


def request_name(file: str) -> str:
    """``web.request.toml`` -> ``web``."""
    return file[: -len(REQUEST_SUFFIX)]


def on_request(intake: Intake) -> Callable[[str, bytes, str], Outcome]:
    """The intake hook for ``NAME.request.toml`` drops, bound to ``intake``'s state.

    The entry and the drop's result are committed in one transaction (the CSR file is
    written just before it), so recovery after a crash either finds the drop done or
    makes the request again from the still-claimed file.
    """

    def handle(file: str, data: bytes, claim: str) -> Outcome:
        name = request_name(file)
        inventory = intake.inventory
        try:
            fields = checked_request(name, inventory, lambda: fields_from_toml(data))
            create_request(
                inventory,
                intake.log,
                intake.config.outbox,
                name,
                fields,
                in_transaction=lambda: inventory.record_drop(
                    claim, file, "accepted", iso(intake.clock())
                ),
            )
        except InvalidRequest as exc:
            raise Rejection(
                "invalid_request",
                f"{'; '.join(exc.problems)}. Fix {file} and drop it again",
            ) from None
        return Outcome(file, "accepted", [name])

    return handle
