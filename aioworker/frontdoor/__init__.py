"""Front-door layer: the nginx config that routes path prefixes to groups, and strict routes."""
