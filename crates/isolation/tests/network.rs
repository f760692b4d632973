//! Environments' network namespaces under the daemon's packet filter: an environment reaches its own ports, the
//! gateway's ports and the internet (here: a namespace of the test's own standing in for it, reached through
//! the host's address translation), but not another environment, not the host's other ports, and the host does
//! not see its ports on loopback; the daemon reaches them with sockets made inside the namespace.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{SandboxRoot, TestAccount, require_root, run_in, text, unique};
use preview_isolation::{Firewall, FirewallRules, Link, Netns, Sandbox, enable_forwarding};

/// Namespaces, links and a table made by the test, removed when dropped; forwarding turned off again if the test
/// turned it on and no daemon runs that relies on it.
struct Network {
    namespaces: Vec<String>,
    table: String,
    turned_forwarding_on: bool,
}

impl Drop for Network {
    fn drop(&mut self) {
        let _ = Firewall::remove(&self.table);
        for name in &self.namespaces {
            let _ = Netns::delete(name);
        }
        let daemons = std::fs::read_dir("/run/preview-daemons").map_or(0, |d| d.count());
        if self.turned_forwarding_on && daemons == 0 {
            let _ = std::fs::write("/proc/sys/net/ipv4/ip_forward", "0");
        }
    }
}

/// Accepts connections on `listener` forever, answering `ok` and remembering each peer's address.
fn serve(listener: std::net::TcpListener) -> Arc<Mutex<Vec<SocketAddr>>> {
    let peers = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&peers);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            if let (Ok(peer), Ok(mut seen)) = (stream.peer_addr(), seen.lock()) {
                seen.push(peer);
            }
            let mut stream = stream;
            let _ = stream.write_all(b"ok");
        }
    });
    peers
}

const PROBE: &str = r#"
import socket, sys
for target in sys.argv[1:]:
    label, host, port = target.split(",")
    s = socket.socket()
    s.settimeout(1.5)
    try:
        s.connect((host, int(port)))
        print(label, "connected", s.recv(2).decode())
    except Exception as e:
        print(label, "failed", type(e).__name__)
"#;

#[tokio::test]
async fn environments_reach_their_own_ports_the_gateway_and_the_internet_and_nothing_else() {
    require_root();
    let seed = (std::process::id() % 200) as u8;
    let id = unique("");
    let short = &id[id.len().saturating_sub(9)..];
    let name = |what: &str| format!("preview-test-{what}{id}");
    // Two environments; "the internet" (a public address); two private networks, one of them allowed; and the
    // clouds' metadata address.
    let link = |what: &str, interface: String, octets: [u8; 4]| Link {
        namespace: name(what),
        host_interface: interface,
        host_address: Ipv4Addr::new(octets[0], octets[1], octets[2], octets[3] + 1),
        address: Ipv4Addr::new(octets[0], octets[1], octets[2], octets[3] + 2),
    };
    // The environments' links are not in a private network, so that only the rule between environments' interfaces
    // keeps them apart.
    let links = [
        link("a", format!("pvta{short}"), [198, 19, seed, 0]),
        link("b", format!("pvtb{short}"), [198, 19, seed, 4]),
        link("internet", format!("oi{short}"), [198, 18, seed, 0]),
        link("allowed", format!("oa{short}"), [10, 252, seed, 0]),
        link("private", format!("op{short}"), [10, 253, seed, 0]),
        link("resolver", format!("or{short}"), [10, 254, seed, 0]),
        Link {
            namespace: name("metadata"),
            host_interface: format!("om{short}"),
            host_address: Ipv4Addr::new(169, 254, 169, 253),
            address: Ipv4Addr::new(169, 254, 169, 254),
        },
    ];
    let mut network = Network {
        namespaces: links.iter().map(|l| l.namespace.clone()).collect(),
        table: format!("preview_test{id}"),
        turned_forwarding_on: false,
    };
    let mut spaces = Vec::new();
    for link in &links {
        spaces.push(Netns::create(&link.namespace).expect("namespace"));
        link.create().expect("link");
    }
    let [
        link_a,
        link_b,
        internet,
        allowed,
        private,
        resolver,
        metadata,
    ] = &links;
    network.turned_forwarding_on = enable_forwarding().expect("forwarding");
    // The host's own listeners: the gateway's port, and a port environments must not reach.
    let gateway = std::net::TcpListener::bind("0.0.0.0:0").expect("gateway");
    let gateway_port = gateway.local_addr().expect("address").port();
    let host_private = std::net::TcpListener::bind("0.0.0.0:0").expect("private");
    let private_port = host_private.local_addr().expect("address").port();
    serve(gateway);
    serve(host_private);
    let firewall = Firewall::install(&FirewallRules {
        table: network.table.clone(),
        interfaces: vec![link_a.host_interface.clone(), link_b.host_interface.clone()],
        gateway_ports: vec![gateway_port],
        subnet: (Ipv4Addr::new(198, 19, 0, 0), 16),
        nameservers: vec![resolver.address],
        allowed: vec![(Ipv4Addr::new(10, 252, seed, 0), 30)],
        // As when a daemon turned forwarding on: only environments' traffic is forwarded.
        only_environments_forward: true,
    })
    .expect("the table installs");
    // A service inside `a`, listening on every address of its namespace; a server in each other network.
    serve(
        spaces[0]
            .listen("0.0.0.0:7000".parse().expect("address"))
            .expect("listens inside a"),
    );
    let mut peers = Vec::new();
    for (space, link) in spaces.iter().zip(&links).skip(2) {
        peers.push(serve(
            space
                .listen(SocketAddr::from((link.address, 80)))
                .expect("listens"),
        ));
    }
    // The resolver also answers on port 53 (TCP stands for DNS here).
    serve(
        spaces[5]
            .listen(SocketAddr::from((resolver.address, 53)))
            .expect("listens on 53"),
    );

    // The daemon reaches the service through a socket made inside `a`; the host's loopback has nothing there,
    // and the host cannot open a connection to its address either.
    let socket = spaces[0].tcp_socket().expect("socket in a");
    let mut stream = socket
        .connect("127.0.0.1:7000".parse().expect("address"))
        .await
        .expect("the daemon reaches a's port")
        .into_std()
        .expect("std stream");
    stream.set_nonblocking(false).expect("blocking");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("answer");
    assert_eq!(answer, "ok");
    assert!(std::net::TcpStream::connect("127.0.0.1:7000").is_err());
    let from_host = std::net::TcpStream::connect_timeout(
        &SocketAddr::from((link_a.address, 7000)),
        Duration::from_millis(1500),
    );
    assert!(
        from_host.is_err(),
        "the host opened a connection into an environment"
    );

    let (account, root) = (TestAccount::new("network"), SandboxRoot::new());
    let sandbox = |space: &Netns| Sandbox {
        uid: account.uid(),
        gid: account.uid(),
        netns: Some(Arc::new(Netns::open(space.name()).expect("open"))),
        cgroup: None,
        root: root.0.clone(),
        system: preview_isolation::SystemEntry::of_host(),
        binds: Vec::new(),
        workdir: PathBuf::from("/"),
        umask: 0o022,
    };
    let probe = |targets: &[String]| {
        let mut script = format!("exec python3 -c '{PROBE}'");
        for target in targets {
            script.push(' ');
            script.push_str(target);
        }
        script
    };
    let from_a = run_in(
        &sandbox(&spaces[0]),
        &probe(&["own,127.0.0.1,7000".to_owned()]),
    )
    .await;
    let from_b = run_in(
        &sandbox(&spaces[1]),
        &probe(&[
            format!("other-environment,{},7000", link_a.address),
            "loopback,127.0.0.1,7000".to_owned(),
            format!("host-private,{},{private_port}", link_b.host_address),
            format!("host-private-via-a,{},{private_port}", link_a.host_address),
            format!("gateway,{},{gateway_port}", link_b.host_address),
            format!("internet,{},80", internet.address),
            format!("allowed,{},80", allowed.address),
            format!("private,{},80", private.address),
            format!("resolver-dns,{},53", resolver.address),
            format!("resolver-web,{},80", resolver.address),
            format!("metadata,{},80", metadata.address),
        ]),
    )
    .await;
    // From outside: into an environment, and — forwarding being only for environments — between two networks
    // that are not environments.
    let from_outside = run_in(
        &sandbox(&spaces[2]),
        &probe(&[
            format!("into-environment,{},7000", link_a.address),
            format!("outside-to-outside,{},80", private.address),
        ]),
    )
    .await;
    let (said_a, said_b, said_outside) = (text(&from_a), text(&from_b), text(&from_outside));
    assert!(said_a.contains("own connected ok"), "{said_a}");
    for expected in [
        "other-environment failed",
        "loopback failed ConnectionRefusedError",
        "host-private failed",
        "host-private-via-a failed",
        "gateway connected ok",
        "internet connected ok",
        "allowed connected ok",
        "private failed",
        "resolver-dns connected ok",
        "resolver-web failed",
        "metadata failed",
    ] {
        assert!(
            said_b.contains(expected),
            "missing `{expected}` in:\n{said_b}"
        );
    }
    assert!(
        said_outside.contains("into-environment failed"),
        "{said_outside}"
    );
    assert!(
        said_outside.contains("outside-to-outside failed"),
        "{said_outside}"
    );
    // The internet saw the host's address, not the environment's.
    let seen = peers[0].lock().expect("peers").clone();
    assert!(!seen.is_empty(), "the internet saw no connection");
    assert!(
        seen.iter()
            .all(|p| p.ip() == std::net::IpAddr::V4(internet.host_address)),
        "{seen:?}"
    );

    // Taken out of the filter's set, an environment's interface is no longer held back.
    firewall
        .remove_interface(&link_b.host_interface)
        .expect("removed from the set");
    let freed = run_in(
        &sandbox(&spaces[1]),
        &probe(&[
            format!("host-private,{},{private_port}", link_b.host_address),
            format!("private,{},80", private.address),
        ]),
    )
    .await;
    assert!(
        text(&freed).contains("host-private connected ok")
            && text(&freed).contains("private connected ok"),
        "{}",
        text(&freed)
    );
    let a = link_a.namespace.clone();
    drop(spaces);
    drop(network);
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(!std::path::Path::new(&format!("/run/netns/{a}")).exists());
}
