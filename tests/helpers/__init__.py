"""Helpers for the tests that run real processes (tests/integration, tests/chaos).

- :mod:`helpers.net`        free loopback ports, a plain TCP listener that records connections
- :mod:`helpers.waiting`    bounded waits: a hang fails with a message instead of hanging
- :mod:`helpers.databases`  a fresh database per test (empty, or a copy of a migrated template),
                            dropped afterwards: the one way the suite makes databases
- :mod:`helpers.api`        a small synchronous HTTPS client to observe a server (jobs, tasks)
- :mod:`helpers.deployment` a server home, its server process, workers and the client CLI
- :mod:`helpers.password_cost` a cheap password-hash cost for servers run in the test's process
- :mod:`helpers.domain`     the domain tier's actors: users, apps, hosts and their work through
                            the server's own functions on a database session, no HTTP

They use the programs as users do (``python -m xwserver|xwworker|xwclient``); nothing
here imports the server, the worker or the client at import time, except
:mod:`helpers.domain`, which imports the server: only the domain tests use it. The
in-process servers of tests/unit/conftest.py take two things from here that do, when called:
the migrated templates (the server's own migrations) and the cheap password cost.
"""
