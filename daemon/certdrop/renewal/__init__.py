"""Renewal: the expiry watch inside the daemon and the hand-off to an ACME client.

- :mod:`~certdrop.renewal.expiry_check` -- ``ExpiryCheck``, the daemon feature that the
  scheduler wakes (it only enqueues); warnings, renewals due, overdue.
- :mod:`~certdrop.renewal.renewer` -- ``Renewer``: renewal requests, running
  ``renewal.command``, retries, and the hand-back to the services; ``Jobs`` is what it
  needs of the daemon's worker queue.
- :mod:`~certdrop.renewal.command` -- running the hand-off command (argv, timeout,
  scrubbed output).
- :mod:`~certdrop.renewal.report` -- the read-only report behind ``certdrop check``.

May import: ``certdrop.services``, ``certdrop.intake``, ``certdrop.store``,
``certdrop.pki`` and the plumbing. Not ``fleet``, ``daemon`` or ``cli``.
"""
