"""Fleet mode: many gateways share certificates, assignments and renewals through NATS
JetStream. Records and rules here are pure; ``engine`` is the one module that talks to NATS."""
