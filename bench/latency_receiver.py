#!/usr/bin/python3
"""The receiver of the latency case of make bench.

Binds 127.0.0.1 on an ephemeral port, writes the port to --port-file once it
listens, answers every request with an empty 200 (HTTP/1.1, keep-alive), and
appends one line per request to --log:

    <webhook-id header> <TAB> <arrival: unix seconds, the realtime clock>

The arrival is taken when the whole request (headers and body) has been
read.  Lines are flushed every 50 ms and on SIGTERM.  One asyncio loop, no
threads: at 1,000 requests/s it costs little CPU and adds little delay.
"""

import argparse
import asyncio
import os
import signal
import socket
import time

log = []


async def handle(reader, writer):
    """Serve the requests of one connection until the client closes it."""
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            webhook_id = b"-"
            expect = False
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"webhook-id":
                    webhook_id = value.strip()
                elif name == b"expect":
                    expect = value.strip().lower() == b"100-continue"
            if expect:
                writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            if length:
                await reader.readexactly(length)
            log.append(b"%s\t%.6f\n" % (webhook_id, time.time()))
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError,
            ConnectionError, ValueError):
        pass
    finally:
        writer.close()


async def flush_every(out, seconds):
    """Write the collected lines out, every so often."""
    while True:
        await asyncio.sleep(seconds)
        flush(out)


def flush(out):
    """Write what has been collected so far."""
    if log:
        out.write(b"".join(log))
        log.clear()
        out.flush()


async def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--pid-file", required=True)
    parser.add_argument("--log", required=True)
    args = parser.parse_args()

    out = open(args.log, "ab")
    server = await asyncio.start_server(handle, "127.0.0.1", 0,
                                        family=socket.AF_INET, backlog=1024)
    port = server.sockets[0].getsockname()[1]

    with open(args.pid_file + ".tmp", "w") as f:
        f.write("%d\n" % os.getpid())
    os.rename(args.pid_file + ".tmp", args.pid_file)
    with open(args.port_file + ".tmp", "w") as f:
        f.write("%d\n" % port)
    os.rename(args.port_file + ".tmp", args.port_file)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    flusher = asyncio.create_task(flush_every(out, 0.05))
    await stop.wait()
    flusher.cancel()
    server.close()
    flush(out)
    out.close()


if __name__ == "__main__":
    asyncio.run(main())
