"""Coverage-guided fuzzing (atheris / libFuzzer) of what the worker runs on a drop's bytes:
parse, sort, judge the chain and keys, describe for the log. Run by test_hostile.py:

    python tests/atheris_intake.py CORPUS_DIR -runs=N -max_len=8192

Only Rejection may escape; anything else is a crash that libFuzzer reports and saves.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import warnings

import atheris

with atheris.instrument_imports(include=["certdrop"]):
    from certdrop.errors import Rejection
    from certdrop.pki import assemble, keys
    from certdrop.pki import chain as chains
    from certdrop.pki.parse import parse
    from certdrop.pki.trust import Verifier

NOW = dt.datetime.now(dt.UTC)
NO_TRUST = Verifier.build([])  # no roots: every verdict is a refusal, explained
PASSPHRASES = [b"wrong", b"right-passphrase"]


def one(data: bytes) -> None:
    try:
        parsed = parse(data, PASSPHRASES)
    except Rejection as rejection:
        assert rejection.code and rejection.reason and "\n" not in rejection.reason
        return
    assert parsed, "parse returned nothing instead of rejecting"
    pieces = assemble.sort_pieces(parsed)
    for key in pieces.keys:
        try:
            assemble.check_key(key)
        except Rejection:
            continue
        keys.to_pem(key)
    for leaf in pieces.leaves:
        try:
            checked = assemble.check_certificate(leaf, pieces.authorities, NO_TRUST, NOW)
        except Rejection:
            continue
        json.dumps(assemble.describe(leaf), ensure_ascii=True)
        chains.to_pem(checked.chain.bundle)


def main() -> None:
    warnings.simplefilter("ignore")  # odd certificates warn (negative serials): not a crash
    atheris.Setup(sys.argv, one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
