"""Fleet mode: many gateways fed from one drop through NATS JetStream (issue 14).

Records, crypto, trust and rules here are pure; ``engine`` is the one module that talks
to NATS. May import ``certdrop.renewal``, ``certdrop.services``, ``certdrop.intake``,
``certdrop.store``, ``certdrop.pki`` and the plumbing. Not ``daemon`` or ``cli``.
"""
