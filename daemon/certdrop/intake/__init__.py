"""Intake: the inbox as files and the pipeline every drop goes through.

- :mod:`~certdrop.intake.inbox` -- claim, read and reject drop files (descriptor-safe).
- :mod:`~certdrop.intake.pipeline` -- ``Intake``: claim -> parse -> pair -> validate ->
  record | hold | reject; ``Outcome`` says what became of a drop.
- :mod:`~certdrop.intake.work` -- the values one drop passes around; the trust anchors.
- :mod:`~certdrop.intake.request` -- requests certdrop makes (key + CSR, ``requested``).
- :mod:`~certdrop.intake.request_toml` -- ``NAME.request.toml`` drops.

May import: ``certdrop.store``, ``certdrop.pki`` and the plumbing. Not ``services``,
``renewal``, ``fleet``, ``daemon`` or ``cli``.
"""
