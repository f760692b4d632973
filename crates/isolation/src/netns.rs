//! Network namespaces: each environment's processes live in one of their own, with a loopback interface of its
//! own (their service ports, invisible to every other environment) and a veth link to the host through which
//! they reach the internet. The daemon reaches their ports by making sockets inside the namespace: a socket
//! belongs to the namespace it was made in, whichever thread uses it later.

use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::OnceLock;

use crate::IsolationError;
use crate::programs::run;

/// An open network namespace (`/run/netns/<name>`); the open file keeps it usable until dropped.
#[derive(Debug)]
pub struct Netns {
    name: String,
    file: File,
}

/// The namespace the daemon started in, to return to after making a socket in another.
fn host_namespace() -> &'static std::io::Result<File> {
    static HOST: OnceLock<std::io::Result<File>> = OnceLock::new();
    HOST.get_or_init(|| File::open("/proc/self/ns/net"))
}

#[allow(unsafe_code)]
fn set_namespace(file: &File) -> std::io::Result<()> {
    // SAFETY: setns(2) takes a file descriptor we own and a flag; it changes only the calling thread's namespace.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

impl Netns {
    /// Creates the namespace `name` (its loopback up), or does nothing when it exists.
    pub fn create(name: &str) -> Result<Netns, IsolationError> {
        if Netns::open(name).is_err() {
            run("ip", &["netns", "add", name], None)?;
            run("ip", &["-n", name, "link", "set", "lo", "up"], None)?;
        }
        Netns::open(name)
            .map_err(|e| IsolationError::io(format!("opening the network namespace {name}"), e))
    }

    /// Opens the existing namespace `name`.
    pub fn open(name: &str) -> std::io::Result<Netns> {
        // Opening the host's namespace now, on a thread that is in it, so that later calls can return to it.
        if let Err(error) = host_namespace() {
            return Err(std::io::Error::new(error.kind(), error.to_string()));
        }
        Ok(Netns {
            name: name.to_owned(),
            file: File::open(format!("/run/netns/{name}"))?,
        })
    }

    /// Removes the namespace `name` (with its end of the veth link, which takes the host's end with it); nothing to
    /// do when it does not exist. Processes still in it keep it alive until they exit.
    pub fn delete(name: &str) -> Result<(), IsolationError> {
        if std::path::Path::new(&format!("/run/netns/{name}")).exists() {
            run("ip", &["netns", "delete", name], None)?;
        }
        Ok(())
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// Runs `make` with the calling thread inside this namespace, then returns to the daemon's: sockets `make`
    /// creates belong to this namespace. `make` must not block or yield; a thread that could not return is not
    /// safe to go on with, so that ends the process.
    pub fn run<T>(&self, make: impl FnOnce() -> std::io::Result<T>) -> std::io::Result<T> {
        let host = match host_namespace() {
            Ok(host) => host,
            Err(error) => return Err(std::io::Error::new(error.kind(), error.to_string())),
        };
        set_namespace(&self.file)?;
        // Back to the daemon's network however `make` ends, a panic included.
        let _back = Return {
            host,
            from: &self.name,
        };
        make()
    }

    /// A TCP listener on `address` inside this namespace.
    pub fn listen(&self, address: std::net::SocketAddr) -> std::io::Result<std::net::TcpListener> {
        self.run(|| std::net::TcpListener::bind(address))
    }

    /// A new IPv4 TCP socket inside this namespace, to connect from.
    pub fn tcp_socket(&self) -> std::io::Result<tokio::net::TcpSocket> {
        self.run(tokio::net::TcpSocket::new_v4)
    }
}

/// Returns the calling thread to the daemon's network namespace when dropped.
struct Return<'a> {
    host: &'a File,
    from: &'a str,
}

impl Drop for Return<'_> {
    fn drop(&mut self) {
        if let Err(error) = set_namespace(self.host) {
            eprintln!(
                "preview: cannot return a thread from the network namespace {} to the daemon's ({error}); stopping, since its sockets would land in the wrong network",
                self.from
            );
            std::process::abort();
        }
    }
}

/// The veth link between a namespace and the host: `host_interface` (on the host, `host_address`) and `eth0` in
/// the namespace (`address`), a /30 between them; the namespace's default route goes through the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub namespace: String,
    pub host_interface: String,
    pub host_address: Ipv4Addr,
    pub address: Ipv4Addr,
}

impl Link {
    /// Removes the host's end of the link (the namespace's end goes with it) at once: left to the namespace's
    /// removal, the kernel takes the pair down a little later. Nothing to do when it does not exist.
    pub fn remove(&self) {
        if std::path::Path::new(&format!("/sys/class/net/{}", self.host_interface)).exists() {
            let _ = run("ip", &["link", "delete", &self.host_interface], None);
        }
    }

    /// Creates the link, its addresses and the default route; an existing link of that name is replaced.
    pub fn create(&self) -> Result<(), IsolationError> {
        let _ = run("ip", &["link", "delete", &self.host_interface], None);
        let host_side = format!(
            "link add {host} type veth peer name eth0 netns {ns}\n\
             addr add {host_address}/30 dev {host}\n\
             link set {host} up\n",
            host = self.host_interface,
            ns = self.namespace,
            host_address = self.host_address,
        );
        run("ip", &["-batch", "-"], Some(&host_side))?;
        let inside = format!(
            "addr add {address}/30 dev eth0\n\
             link set eth0 up\n\
             route add default via {host_address}\n",
            address = self.address,
            host_address = self.host_address,
        );
        run("ip", &["-n", &self.namespace, "-batch", "-"], Some(&inside))
    }
}

/// Turns on IPv4 forwarding, without which the environments' traffic to the internet goes nowhere; returns
/// whether it was off.
pub fn enable_forwarding() -> Result<bool, IsolationError> {
    let path = "/proc/sys/net/ipv4/ip_forward";
    let current = std::fs::read_to_string(path)
        .map_err(|e| IsolationError::io(format!("reading {path}"), e))?;
    if current.trim() == "1" {
        return Ok(false);
    }
    std::fs::write(path, "1").map_err(|e| IsolationError::io(format!("writing 1 to {path}"), e))?;
    Ok(true)
}
