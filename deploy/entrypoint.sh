#!/bin/sh
# Entrypoint of the Reelay image: runs one executable as PID 1 (exec), so SIGTERM reaches it directly and its bounded
# graceful shutdown runs.
#
#   docker run IMAGE                   -> $REELAY_SERVICE (the image's SERVICE build argument, default gateway)
#   docker run IMAGE dispatcher        -> /usr/local/bin/dispatcher
#   docker run IMAGE reelay migrate    -> /usr/local/bin/reelay migrate
#   docker run -it IMAGE sh            -> anything else runs as given (debugging)
set -eu

if [ "$#" -eq 0 ]; then
    set -- "${REELAY_SERVICE:-gateway}"
fi

case "$1" in
    gateway | scheduler | dispatcher | webhook | reelay | replicate-standin)
        program="/usr/local/bin/$1"
        shift
        exec "$program" "$@"
        ;;
    *)
        exec "$@"
        ;;
esac
