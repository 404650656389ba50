"""A local stand-in for Braze's REST API: `/users/track`, `/users/export/ids`, limits and faults.

`app.running(settings)` starts it in-process and yields its base URL; `app.serve(settings)` runs
it until a signal; `client.SandboxClient` talks to it, admin endpoints included.
"""
