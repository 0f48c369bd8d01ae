"""Supervisor layer: the master process, its decisions (`plan`), and the worker process.

The master binds every listener, forks each group's workers and keeps them to the plan; hooks
(`hooks.Hook`) let higher layers such as `observe` plug in without the master importing them.
"""
