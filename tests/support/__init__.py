"""The test harness: real services (a module each), the daemon subprocess, test PKI.

process (ports, bounded waits, stopping process trees by PID) · nginx · postfix ·
smtp_sink · sshd · pebble · daemon (``RunningDaemon``, ``drop``) · pkitools (certificates
from cryptography's builders) · openssl_ca (openssl as an independent oracle).
"""
