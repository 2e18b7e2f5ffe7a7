"""HubSpot sync: pull a portal into a snapshot, push scores and weights back, and a local stand-in for both.

Modules: `config` (portal configuration), `client` (client factory, rate limiter, retries, token handling),
`pull`, `push` (and rollback), `sandbox` (the loopback stand-in used by tests, benchmarks and the demo).
"""
