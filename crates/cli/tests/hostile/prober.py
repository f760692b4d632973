"""An app that answers its health check and, when asked, attacks what the request names (see attacks.py). It
serves every connection from one thread (asyncio), so that connections left open cost it nothing."""

import asyncio
import json
import os

import attacks


async def answer(writer, body, status=200):
    data = json.dumps(body).encode()
    reason = {200: "OK", 404: "Not Found", 500: "Internal Server Error"}[status]
    writer.write(
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n"
        f"Connection: close\r\n\r\n".encode() + data
    )
    await writer.drain()


async def serve(reader, writer):
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        body = await reader.readexactly(length) if length else b""
        if method == "GET" and path == "/healthz":
            await answer(writer, {"environment": os.environ.get("PREVIEW_ENVIRONMENT"), "uid": os.getuid()})
        elif method == "GET" and path == "/build-results":
            try:
                with open("build-results.json") as f:
                    await answer(writer, json.load(f))
            except OSError as error:
                await answer(writer, {"error": str(error)}, 500)
        elif method == "POST":
            targets = json.loads(body or b"{}")
            results = await asyncio.get_running_loop().run_in_executor(None, attacks.run, targets)
            await answer(writer, results)
        else:
            await answer(writer, {}, 404)
    except (asyncio.IncompleteReadError, ConnectionError, ValueError):
        pass
    finally:
        writer.close()


async def main():
    # Every address of its network, so that another environment that could route to it would get in.
    server = await asyncio.start_server(serve, "0.0.0.0", int(os.environ["PORT"]), backlog=4096)
    async with server:
        await server.serve_forever()


asyncio.run(main())
