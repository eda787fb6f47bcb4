#!/usr/bin/env bash
# The CUDA MPS control daemon of one GPU node (docs/BENCHMARKS.md "Packing trials" says when it
# helps). With the daemon running, every CUDA process that sees the same CUDA_MPS_PIPE_DIRECTORY
# becomes a client of one MPS server per GPU, and the kernels of packed trials can run at the
# same time instead of time-sliced; without it (or when it is not reachable) CUDA runs as usual.
#
#   scripts/mps.sh start            # start the daemon (no-op if one answers); exit 1 if it cannot
#   scripts/mps.sh status           # exit 0 if a daemon answers on CUDA_MPS_PIPE_DIRECTORY
#   scripts/mps.sh stop             # ask it to quit and wait until it has
#   scripts/mps.sh exec CMD ARG...  # start, then exec CMD (a container's main process)
#
# Needs CUDA_MPS_PIPE_DIRECTORY and CUDA_MPS_LOG_DIRECTORY (the daemon, the MPS server and the
# clients meet in the pipe directory: put it where all of them see it) and
# nvidia-cuda-mps-control on PATH (part of the NVIDIA driver; the NVIDIA container toolkit
# mounts it into containers whose NVIDIA_DRIVER_CAPABILITIES include compute, as the CUDA images
# set). The daemon runs as the calling user, which must be the user of the CUDA processes.
set -euo pipefail

: "${CUDA_MPS_PIPE_DIRECTORY:?set CUDA_MPS_PIPE_DIRECTORY (where the daemon and its clients meet)}"
: "${CUDA_MPS_LOG_DIRECTORY:?set CUDA_MPS_LOG_DIRECTORY (the daemon and server logs)}"
export CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY
CONTROL="${MPS_CONTROL:-nvidia-cuda-mps-control}"
WAIT_S="${MPS_WAIT_S:-10}"

answers() {  # the daemon answers a query on the pipe directory
    echo get_server_list | timeout 10 "$CONTROL" >/dev/null 2>&1
}

wait_for() {  # wait_for up|down: poll until the daemon answers (up) or does not (down)
    local deadline=$((SECONDS + WAIT_S))
    while [ "$SECONDS" -le "$deadline" ]; do
        if answers; then [ "$1" = up ] && return 0; else [ "$1" = down ] && return 0; fi
        sleep 0.2
    done
    return 1
}

start() {
    if ! command -v "$CONTROL" >/dev/null 2>&1; then
        echo "mps: $CONTROL not found (NVIDIA driver utilities; in a container the NVIDIA" \
            "toolkit mounts it with NVIDIA_DRIVER_CAPABILITIES=compute)" >&2
        return 1
    fi
    mkdir -p "$CUDA_MPS_PIPE_DIRECTORY" "$CUDA_MPS_LOG_DIRECTORY"
    if answers; then
        echo "mps: a daemon already answers on $CUDA_MPS_PIPE_DIRECTORY"
        return 0
    fi
    # Nothing answers: whatever is left in the pipe directory is from a daemon that died (a
    # restarted container on a kept volume) and would make the new one refuse to start.
    find "$CUDA_MPS_PIPE_DIRECTORY" -mindepth 1 -delete
    "$CONTROL" -d
    if ! wait_for up; then
        echo "mps: the daemon did not answer within ${WAIT_S}s;" \
            "see $CUDA_MPS_LOG_DIRECTORY/control.log" >&2
        return 1
    fi
    echo "mps: daemon running (pipes $CUDA_MPS_PIPE_DIRECTORY, logs $CUDA_MPS_LOG_DIRECTORY)"
}

stop() {
    answers || return 0
    echo quit | "$CONTROL"
    if ! wait_for down; then
        echo "mps: the daemon still answers after ${WAIT_S}s" >&2
        return 1
    fi
    echo "mps: daemon stopped"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) answers ;;
    exec)
        shift
        [ "$#" -gt 0 ] || { echo "usage: $0 exec CMD [ARG...]" >&2; exit 2; }
        start
        exec "$@"
        ;;
    *)
        echo "usage: $0 start|stop|status|exec CMD [ARG...]" >&2
        exit 2
        ;;
esac
