#!/bin/sh
# Stand-in entrypoint, as in the official image: no arguments, or flags, run nats-server.
set -e
if [ "$#" -eq 0 ] || [ "${1#-}" != "$1" ]; then
  set -- nats-server "$@"
fi
exec "$@"
