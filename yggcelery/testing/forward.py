"""A TCP forwarder: publish a server that listens on loopback on the machine's own address.

Ollama listens on 127.0.0.1:11434 unless told otherwise, and so does ``ygg sim``; on a real host
an operator sets ``OLLAMA_HOST`` or puts a reverse proxy in front. The test bed does the latter
with this forwarder, run inside the host's namespace::

    python -m yggcelery.testing.forward --listen 198.18.0.33:11434 --to 127.0.0.1:11434

Each accepted connection gets its own connection to the target; bytes are copied both ways
until either side closes, then both are closed. A target that refuses closes the client at once.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal

log = logging.getLogger(__name__)

_CHUNK = 64 * 1024


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, not {text!r}")
    return host, int(port)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def _serve_client(
    target: tuple[str, int], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        up_reader, up_writer = await asyncio.open_connection(*target)
    except OSError as exc:
        log.info("forward: %s:%d unreachable: %s", *target, exc)
        writer.close()
        return
    await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))


async def forward(listen: tuple[str, int], target: tuple[str, int]) -> None:
    """Forward connections to ``listen`` to ``target`` until SIGTERM or SIGINT."""
    server = await asyncio.start_server(
        lambda r, w: _serve_client(target, r, w), *listen, reuse_address=True
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"forward: {listen[0]}:{listen[1]} -> {target[0]}:{target[1]}", flush=True)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m yggcelery.testing.forward")
    parser.add_argument("--listen", type=_address, required=True, metavar="HOST:PORT")
    parser.add_argument("--to", type=_address, required=True, metavar="HOST:PORT")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(forward(args.listen, args.to))


if __name__ == "__main__":
    main()
