"""The running daemon: composed where it starts, from a written-out list of features.

- :mod:`~certdrop.daemon.app` -- ``serve`` (composition) and ``Daemon`` (signals, health,
  the systemd watchdog, config reload).
- :mod:`~certdrop.daemon.worker` -- the one worker thread and its queue.
- :mod:`~certdrop.daemon.features` -- the ``Feature`` hooks and the feature list.
- :mod:`~certdrop.daemon.control` -- the control socket; ``run_command`` for the CLI,
  ``ask`` for the daemon's own requests (``health``, ``reload``).
- :mod:`~certdrop.daemon.commands` -- the table of state-changing commands.
- :mod:`~certdrop.daemon.manage` -- rename, delete, unassign, discard (behind commands).
- :mod:`~certdrop.daemon.state` -- the state lock, folders, and the context.
- :mod:`~certdrop.daemon.watcher` -- the inbox watcher (watchdog, inotify).
- :mod:`~certdrop.daemon.metrics` -- the Prometheus endpoint (prometheus_client).
- :mod:`~certdrop.daemon.preflight` -- what ``certdrop check`` judges beside expiry.
- :mod:`~certdrop.daemon.notify` -- systemd notifications.

May import every shell subpackage, the store, the core and the plumbing. Not ``cli``.
"""
