#!/bin/sh
# Stand-in entrypoint: the official image's runs its /docker-entrypoint.d scripts first, which the
# stand-in has none of; then the command runs.
set -e
exec "$@"
