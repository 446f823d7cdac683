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
from certdrop.limits import DEFAULT_LIMITS
from certdrop.pki.csr import RequestFields

# tomllib recurses once per nested array or inline table: deeper than this is no request.
MAX_NESTING = 16


def fields_from_toml(data: bytes, *, max_sans: int = DEFAULT_LIMITS.max_sans) -> RequestFields:
    """Read the fields of a ``NAME.request.toml`` file (UTF-8, a BOM allowed); every
    problem, including a TOML syntax error, is raised as one ``InvalidRequest``."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequest(["the file is not UTF-8 text; save it as UTF-8"]) from None
    if _nesting(text) > MAX_NESTING:
        raise InvalidRequest(
            [f"the file nests arrays or tables more than {MAX_NESTING} deep; a request is flat"]
        )
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidRequest([f"the file is not valid TOML: {exc}"]) from None
    except RecursionError:  # the bound above should prevent it; never a crashed job
        raise InvalidRequest(["the file nests too deep to read; a request is flat"]) from None
    return RequestFields.from_mapping(table, max_sans=max_sans)


def _nesting(text: str) -> int:
    """An upper bound of the TOML's bracket nesting: brackets inside strings count too,
    which can only overstate it (and no field of a request needs either bracket)."""
    depth = deepest = 0
    for char in text:
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth = max(depth - 1, 0)
    return deepest


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
            max_sans = intake.config.limits.max_sans
            fields = checked_request(
                name, inventory, lambda: fields_from_toml(data, max_sans=max_sans)
            )
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
