"""aiohttp glue shared by the MASA and the registrar: TLS, client identity,
the one error middleware, structured logs, serving with clean shutdown.

It sits between the sans-IO core (``brski``) and the roles, so the roles can
share server plumbing without importing each other.
"""
