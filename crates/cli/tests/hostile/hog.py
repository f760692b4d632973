"""An app that listens, and with HOG=1 takes all the memory it can a moment after it became healthy."""

import os
import socket
import time

listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", int(os.environ["PORT"])))
listener.listen(64)
if os.environ.get("HOG") == "1":
    time.sleep(1.5)
    chunks = []
    while True:
        chunks.append(bytearray(16 << 20))
while True:
    connection, _ = listener.accept()
    connection.close()
