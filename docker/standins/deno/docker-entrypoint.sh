#!/bin/sh
# Stand-in entrypoint, as in the official image: flags and deno subcommands run deno.
set -e
if [ "${1#-}" != "$1" ]; then
  exec deno "$@"
fi
case "$1" in
  bench | bundle | cache | check | compile | completions | coverage | doc | eval | fmt | help | info | \
    init | install | jupyter | lint | lsp | publish | repl | run | serve | task | test | types | \
    uninstall | upgrade | x)
    exec deno "$@"
    ;;
esac
exec "$@"
