"""Deploying to services: make each service verifiably serve the certificate it should have.

- :mod:`~certdrop.services.reconcile` -- ``assign`` and ``reconcile`` (desired vs deployed).
- :mod:`~certdrop.services.install` -- crash-safe service files, baselines, rollback copies.
- :mod:`~certdrop.services.reload` -- running a reload command (argv, timeout).
- :mod:`~certdrop.services.probe` -- the TLS probe that proves what is served.
- :mod:`~certdrop.services.hostname` -- automatic assignment by a service's ``hostname``.

May import: ``certdrop.store``, ``certdrop.pki`` and the plumbing (config, errors, files,
spawn, clock). Not ``intake``, ``renewal``, ``fleet``, ``daemon`` or ``cli``.
"""
