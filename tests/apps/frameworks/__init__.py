"""The same small app written in six frameworks, for comparing aioworker with uvicorn.

Every app serves the routes in `ROUTES` with the same meaning, so a request answered
differently by the two servers shows a difference between the servers, not the apps.
"""

ROUTES = ("/hello", "/echo", "/json", "/stream", "/query", "/header", "/created", "/raise")
