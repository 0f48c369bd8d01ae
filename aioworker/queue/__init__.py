"""Queue-fed groups: requests for a group's routes go through a Redis stream (docs/queue.md).

`jobs` turns a request into a job and a response into reply events and back (pure, no I/O);
`broker` is every Redis command the queues use; `relay` is the default group's side (enqueue,
then relay the answer, 202 with a Location past `reply_timeout`); `consumer` is the queue-fed
worker's side (pull a job, run the app, write the reply). Only `broker` imports redis, and the
supervisor imports this package only when a config has queue-fed groups.
"""
