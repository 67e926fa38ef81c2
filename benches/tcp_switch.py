"""A TCP relay that can cut the link, for benches/outage.sh.

    tcp_switch.py TARGET_HOST TARGET_PORT

Listens on a port the OS picks (printed as `listening on port N`) and relays
every connection to the target. SIGUSR1 cuts the link: open connections are
reset and new ones are accepted and reset at once, as when the database
server is stopped. SIGUSR2 restores it.
"""
import asyncio
import signal
import socket
import sys

TARGET = (sys.argv[1], int(sys.argv[2]))
UP = True
OPEN = set()


def reset(writer):
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            # Linger 0: close with RST, as a stopped server's kernel answers.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        except OSError:
            pass
    writer.close()


async def pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def relay(client_reader, client_writer):
    if not UP:
        reset(client_writer)
        return
    try:
        server_reader, server_writer = await asyncio.open_connection(*TARGET)
    except OSError:
        reset(client_writer)
        return
    pair = (client_writer, server_writer)
    OPEN.add(pair)
    try:
        await asyncio.gather(pipe(client_reader, server_writer), pipe(server_reader, client_writer))
    finally:
        OPEN.discard(pair)


def cut():
    global UP
    UP = False
    for client_writer, server_writer in list(OPEN):
        reset(client_writer)
        reset(server_writer)
    OPEN.clear()
    print("link down", flush=True)


def restore():
    global UP
    UP = True
    print("link up", flush=True)


async def main():
    server = await asyncio.start_server(relay, "127.0.0.1", 0)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, cut)
    loop.add_signal_handler(signal.SIGUSR2, restore)
    print(f"listening on port {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


asyncio.run(main())
