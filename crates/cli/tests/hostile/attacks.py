"""What a hostile program tries against other environments, the daemon and the machine. Every attempt is recorded
with its outcome: "succeeded" means the attack worked. Attempts labelled "control: ..." are things the program
is allowed to do; they show that it runs and that its own files and ports work."""

import os
import resource
import signal
import socket
import threading
import time

# The descriptors this process had when it started, beyond the standard three: whatever the daemon passed on.
INHERITED = {}
for name in os.listdir("/proc/self/fd"):
    if int(name) > 2:
        try:
            INHERITED[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            pass


def record(results, label, action):
    try:
        detail = action()
        results.append({"attempt": label, "outcome": "succeeded", "detail": str(detail)[:300]})
    except BaseException as error:  # every failure is an outcome to report
        results.append({"attempt": label, "outcome": "failed", "detail": f"{type(error).__name__}: {error}"[:300]})


def read(path):
    with open(path, "rb") as f:
        return f.read(64)


def write(path):
    with open(path, "w") as f:
        f.write("written by a hostile program")
    return "written"


def connect(host, port):
    with socket.create_connection((host, port), timeout=1.5):
        return "connected"


def signal_process(pid):
    os.kill(pid, signal.SIGTERM)
    return "signalled"


def environ_of_others():
    me = os.getuid()
    own, others = 0, set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                f.read()
            uid = os.stat(f"/proc/{entry}").st_uid
        except OSError:
            continue
        if uid == me:
            own += 1
        else:
            others.add(uid)
    if others:
        return f"read the environment of processes of users {sorted(others)}"
    raise PermissionError(f"no other user's environment is readable ({own} of its own were)")


def fork_without_bound():
    reading, writing = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(reading)
        children = []
        while len(children) < 100000:
            try:
                child = os.fork()
            except OSError:
                break
            if child == 0:
                time.sleep(60)
                os._exit(0)
            children.append(child)
        os.write(writing, str(len(children)).encode())
        for child in children:
            os.kill(child, signal.SIGKILL)
        for child in children:
            os.waitpid(child, 0)
        os._exit(0)
    os.close(writing)
    count = int(os.read(reading, 32) or b"0")
    os.close(reading)
    os.waitpid(pid, 0)
    if count >= 100000:
        return f"forked {count} processes"
    raise BlockingIOError(f"stopped at {count} processes")


def allocate_without_bound():
    reading, writing = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(reading)
        chunks = []
        for mib in range(16, 16 * 1024 + 1, 16):
            chunks.append(bytearray(16 << 20))
            os.write(writing, f"{mib}\n".encode())
        os._exit(0)
    os.close(writing)
    reached = b""
    while True:
        data = os.read(reading, 4096)
        if not data:
            break
        reached += data
    os.close(reading)
    _, status = os.waitpid(pid, 0)
    last = reached.split()[-1].decode() if reached.split() else "0"
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
        return f"allocated {last} MiB"
    raise MemoryError(f"killed by signal {os.WTERMSIG(status)} after {last} MiB")


def inherited():
    # The listing itself opened one, which is closed again by now.
    passed = {fd: target for fd, target in INHERITED.items() if not target.startswith("/proc/")}
    if passed:
        return f"inherited {passed}"
    raise LookupError("nothing beyond its standard input, output and error")


def join_group(pgid):
    pid = os.fork()
    if pid == 0:
        try:
            os.setpgid(0, pgid)
            os._exit(0)
        except OSError as error:
            os._exit(error.errno)
    _, status = os.waitpid(pid, 0)
    if os.WEXITSTATUS(status) == 0:
        return f"joined process group {pgid}"
    raise PermissionError(f"[Errno {os.WEXITSTATUS(status)}] {os.strerror(os.WEXITSTATUS(status))}")


def terminal():
    fd = os.open("/dev/tty", os.O_RDWR)
    os.close(fd)
    return "opened the controlling terminal"


def flood(mib):
    # One line without end on its standard output, which the daemon captures.
    pid = os.fork()
    if pid == 0:
        chunk = b"x" * (1 << 20)
        for _ in range(mib):
            os.write(1, chunk)
        os._exit(0)
    os.waitpid(pid, 0)
    return f"wrote {mib} MiB without a newline"


def hold(host, port, count, seconds):
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    sockets = []

    def keep():
        for _ in range(count):
            try:
                sockets.append(socket.create_connection((host, port), timeout=2))
            except OSError:
                break
        time.sleep(seconds)
        for s in sockets:
            s.close()

    threading.Thread(target=keep, daemon=True).start()
    return f"holding up to {count} connections for {seconds} s"


def search(secret_hex, roots):
    # Given in hex, so that the program's own copy of what it looks for does not count as finding it.
    needle, looked = bytes.fromhex(secret_hex), 0
    skipped = ("/proc", "/sys", "/dev", "/usr")
    for root in roots:
        if root == "/proc":
            for entry in os.listdir("/proc"):
                for name in ("environ", "cmdline"):
                    try:
                        with open(f"/proc/{entry}/{name}", "rb") as f:
                            looked += 1
                            if needle in f.read():
                                return f"found in /proc/{entry}/{name}"
                    except OSError:
                        pass
            continue
        for directory, subdirectories, files in os.walk(root):
            subdirectories[:] = [d for d in subdirectories if os.path.join(directory, d) not in skipped]
            for name in files:
                path = os.path.join(directory, name)
                try:
                    with open(path, "rb") as f:
                        looked += 1
                        if needle in f.read(1 << 20):
                            return f"found in {path}"
                except OSError:
                    pass
    raise LookupError(f"not in any of the {looked} files it could open")


def run(targets):
    results = []
    record(results, "read other processes' environments", environ_of_others)
    record(results, "use descriptors the daemon passed on", inherited)
    record(results, "open the daemon's terminal", terminal)
    if "pgid" in targets:
        record(results, f"join the daemon's process group {targets['pgid']}", lambda: join_group(targets["pgid"]))
    for pid in targets.get("pids", []):
        record(results, f"signal process {pid}", lambda pid=pid: signal_process(pid))
    for path in targets.get("read", []):
        record(results, f"read {path}", lambda path=path: read(path))
    for path in targets.get("list", []):
        record(results, f"list {path}", lambda path=path: os.listdir(path))
    for path in targets.get("write", []):
        record(results, f"write {path}", lambda path=path: write(path))
    for host, port in targets.get("connect", []):
        record(results, f"connect to {host}:{port}", lambda host=host, port=port: connect(host, port))
    if targets.get("secret_hex"):
        record(results, "find the other environment's secret",
               lambda: search(targets["secret_hex"], targets.get("search", [])))
    if targets.get("bombs"):
        record(results, "fork without bound", fork_without_bound)
        record(results, "allocate memory without bound", allocate_without_bound)
    controls = targets.get("controls", {})
    for path in controls.get("read", []):
        record(results, f"control: read {path}", lambda path=path: read(path))
    for path in controls.get("write", []):
        record(results, f"control: write {path}", lambda path=path: write(path))
    for host, port in controls.get("connect", []):
        record(results, f"control: connect to {host}:{port}", lambda host=host, port=port: connect(host, port))
    for path, content in controls.get("files", []):
        record(results, f"control: write {path}", lambda path=path, content=content: open(path, "w").write(content))
    for link, target in controls.get("plant", []):
        record(results, f"control: plant {link} -> {target}", lambda link=link, target=target: os.symlink(target, link))
    if controls.get("flood_mib"):
        record(results, "control: flood its own output", lambda: flood(controls["flood_mib"]))
    if controls.get("hold"):
        host, port, count, seconds = controls["hold"]
        record(results, "control: hold connections", lambda: hold(host, port, count, seconds))
    return results
