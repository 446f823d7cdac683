"""Fleet mode: many gateways fed from one drop through NATS JetStream (issue 14).

May import ``certdrop.renewal``, ``certdrop.services``, ``certdrop.intake``,
``certdrop.store``, ``certdrop.pki`` and the plumbing. Not ``daemon`` or ``cli``.
"""
