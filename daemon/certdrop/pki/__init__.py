"""The pure core: every decision over bytes and values, no I/O.

parse (any drop format) · chain (ordering, anchors) · keys (the one ``PrivateKey`` type,
key ids, possession) · assemble (sorting a drop's pieces, checks) · pairing (what pairs
with what, which request a certificate completes) · fields (request fields, checked) ·
csr (keys and CSRs) · export (PEM/PKCS#12) · layout (service files) · choose (best
certificate for a host) · expiry (warnings, renewal timing) · names (the name rule).

No file system, clock, database, network or logging: ``now`` is passed in. May import
only the standard library's pure modules, ``cryptography`` and ``certdrop.errors``.
"""
