"""HTTP layer: one worker's engine, from bytes on a socket to the ASGI app and back.

`parser` (sans-IO) -> `connection` (transport, keep-alive, timeouts, flow control) -> `cycle`
(one request's scope, receive, deadlines; its `framing.Response` half frames what the app sends)
-> the app; `response` renders head and error bytes, `counters` counts every request, `context`
holds what one server's connections share; `server` serves an app inside a running loop. This
layer imports only `config`, `sockets` and the shared bottom modules, never the supervisor.
"""
