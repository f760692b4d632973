//! Keeping environments apart, when the daemon runs as root. Each environment is a *space*: a user of its own
//! that its apps and jobs run as, a builder (the project's, or the preview's own), a cgroup bounding everything it
//! runs, and a network namespace linked to the host under the daemon's packet filter. Every process starts in a
//! sandbox made from its space (see `preview_isolation::Sandbox`).
//!
//! Each protection is checked when the runtime opens; one the machine cannot give (no cgroup controllers, no
//! `nft`) is off and reported as such, the others stay on. Without root there is none, and `protections` says so.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use preview_deploy::{EnvironmentAddress, Protection};
use preview_isolation::{
    Bind, Cgroup, CgroupLimits, Cgroups, Firewall, FirewallRules, Link, Netns, Sandbox, SystemEntry,
};

use crate::accounts::{Accounts, IdRange};
use crate::layout::{self, Builder};
use crate::presence::Presence;

/// How environments are kept apart; given only when the daemon runs as root.
#[derive(Debug, Clone)]
pub struct IsolationConfig {
    /// The ids environments' and builders' users get.
    pub users: IdRange,
    /// The addresses environments' links to the host get: a /30 each, placed by the environment's user id.
    pub subnet: Subnet,
    /// Where the gateway listens: environments may connect to these ports of the host.
    pub gateway_ports: Vec<u16>,
    /// Private networks environments may reach (all private, shared and link-local addresses are closed to them
    /// otherwise, the clouds' metadata services among them).
    pub allowed_networks: Vec<Subnet>,
    /// Directories builds may run tools from, though they lie in a private place such as root's home (a rustup
    /// installation: `~/.cargo/bin`, `~/.rustup`); each is visible read-only, nothing around it.
    pub tools: Vec<PathBuf>,
    /// An empty directory of the host that sandboxes cover with their own files.
    pub sandbox_root: PathBuf,
}

impl IsolationConfig {
    pub fn new(gateway_ports: Vec<u16>) -> IsolationConfig {
        IsolationConfig {
            users: IdRange::default(),
            subnet: Subnet::default(),
            gateway_ports,
            allowed_networks: Vec::new(),
            tools: Vec::new(),
            sandbox_root: PathBuf::from("/run/preview"),
        }
    }
}

/// An IPv4 network, e.g. `10.213.0.0/16`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    pub network: Ipv4Addr,
    pub prefix: u8,
}

impl Subnet {
    pub fn parse(text: &str) -> Result<Subnet, String> {
        let bad =
            || format!("`{text}` is not an IPv4 network; write ADDRESS/PREFIX, e.g. 10.213.0.0/16");
        let (address, prefix) = text.split_once('/').ok_or_else(bad)?;
        let network: Ipv4Addr = address.trim().parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.trim().parse().map_err(|_| bad())?;
        if !(8..=28).contains(&prefix) {
            return Err(format!("`{text}`: the prefix must be 8 to 28"));
        }
        let mask = u32::MAX << (32 - prefix);
        if u32::from(network) & !mask != 0 {
            return Err(format!(
                "`{text}` has host bits set; the network is {}/{prefix}",
                Ipv4Addr::from(u32::from(network) & mask)
            ));
        }
        Ok(Subnet { network, prefix })
    }

    fn size(&self) -> u64 {
        1u64 << (32 - self.prefix)
    }
}

impl Default for Subnet {
    fn default() -> Self {
        Subnet {
            network: Ipv4Addr::new(10, 213, 0, 0),
            prefix: 16,
        }
    }
}

impl std::fmt::Display for Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// One environment's space as it exists now.
#[derive(Debug)]
pub(crate) struct Space {
    pub user: u32,
    pub builder: u32,
    pub preview: bool,
    pub netns: Option<Arc<Netns>>,
    pub link: Option<Link>,
    pub cgroup: Option<Cgroup>,
    pub limits: CgroupLimits,
}

/// What a sandboxed process is.
pub(crate) enum Work<'a> {
    /// Exporting a commit as its builder into `partial` (the tree being made), with `scratch` (new and empty) as
    /// its `/tmp`: nothing a build of the builder left behind can reach the export.
    Checkout {
        git_dir: &'a Path,
        partial: &'a Path,
        scratch: &'a Path,
    },
    /// A build command in its builder's checkout, with its cache.
    Build {
        tree: &'a Path,
        directory: &'a str,
        builder: &'a Builder,
        service: &'a str,
    },
    /// A job or an app version, in the checkout (read-only) with its home and the environment's /tmp.
    Run {
        tree: &'a Path,
        directory: &'a str,
        home: &'a Path,
        tmp: &'a Path,
        /// Its cgroup's name below the environment's: `app-web-20016`, `job-migrate`.
        unit: String,
        limits: CgroupLimits,
    },
}

/// A build's own task limit (compilers start many threads); memory and CPU are the environment's.
const BUILD_TASKS: u64 = 4096;
/// A job's or app's task limit when its spec sets none.
pub(crate) const DEFAULT_TASKS: u64 = 1024;

pub(crate) struct Isolation {
    config: IsolationConfig,
    pub accounts: Accounts,
    cgroups: Result<Cgroups, String>,
    network: Result<Firewall, String>,
    /// The host's system directories every sandbox sees read-only.
    system: Vec<SystemEntry>,
    /// This daemon among the daemons of the machine, until it stops.
    presence: std::sync::Mutex<Option<Presence>>,
    /// Sandboxes' `resolv.conf`, and where they see it.
    resolver: Option<(PathBuf, PathBuf)>,
}

fn key(env: &EnvironmentAddress) -> String {
    format!("env:{}/{}", env.project, env.environment)
}

/// The cgroup under which servers with limits of their own run.
const SERVERS_UNIT: &str = "database-servers";

/// The cgroup (and record) name of an environment: `shop.pr-1` (names are DNS labels, without dots).
pub(crate) fn unit_name(env: &EnvironmentAddress) -> String {
    format!("{}.{}", env.project, env.environment)
}

fn namespace(user: u32) -> String {
    format!("preview-{user}")
}

fn interface(user: u32) -> String {
    format!("pv{user}")
}

impl Isolation {
    pub(crate) fn open(
        config: IsolationConfig,
        runtime_dir: &Path,
        marker: &str,
        log: &(dyn Fn(&str) + Sync),
    ) -> Result<Isolation, String> {
        let missing =
            preview_isolation::missing_programs(&["groupadd", "useradd", "userdel", "groupdel"]);
        if !missing.is_empty() {
            return Err(format!(
                "cannot give environments users of their own: missing {}; install them, or run the daemon as an ordinary user (without isolation)",
                missing.join(", ")
            ));
        }
        std::fs::create_dir_all(&config.sandbox_root)
            .and_then(|()| {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(
                    &config.sandbox_root,
                    std::fs::Permissions::from_mode(0o755),
                )
            })
            .map_err(|e| format!("cannot create {}: {e}", config.sandbox_root.display()))?;
        let accounts = Accounts::open(
            runtime_dir.join("accounts.json"),
            config.users,
            marker.to_owned(),
        )?;
        let cgroups = Cgroups::detect(&format!("preview-{marker}")).map_err(|e| e.to_string());
        let presence = Presence::register(marker)?;
        let network = Isolation::install_network(&config, &accounts, marker, &presence);
        if let Err(reason) = &network {
            log(&format!("network isolation is off: {reason}"));
        }
        if let Err(reason) = &cgroups {
            log(&format!("resource limits are off: {reason}"));
        }
        let resolver = crate::resolver::for_sandboxes(runtime_dir)?;
        Ok(Isolation {
            config,
            accounts,
            cgroups,
            network,
            system: SystemEntry::of_host(),
            resolver,
            presence: std::sync::Mutex::new(Some(presence)),
        })
    }

    fn install_network(
        config: &IsolationConfig,
        accounts: &Accounts,
        marker: &str,
        presence: &Presence,
    ) -> Result<Firewall, String> {
        let missing = preview_isolation::missing_programs(&["ip", "nft"]);
        if !missing.is_empty() {
            return Err(format!("missing {}", missing.join(", ")));
        }
        if 4 * u64::from(config.users.count()) > config.subnet.size() {
            return Err(format!(
                "{} has room for {} environments' links, fewer than the {} user ids of --users; give a larger --network or a smaller --users",
                config.subnet,
                config.subnet.size() / 4,
                config.users.count()
            ));
        }
        // Forwarding that a daemon of this machine turned on stays limited to environments while any runs.
        let only_environments_forward = presence.forward()?;
        let interfaces = accounts
            .all()
            .iter()
            .filter(|(key, _)| key.starts_with("env:"))
            .map(|(_, user)| interface(*user))
            .collect();
        let nameservers = crate::resolver::nameservers()
            .into_iter()
            .filter_map(|ip| match ip {
                std::net::IpAddr::V4(ip) => Some(ip),
                std::net::IpAddr::V6(_) => None,
            })
            .collect();
        Firewall::install(&FirewallRules {
            table: format!("preview_{marker}"),
            interfaces,
            gateway_ports: config.gateway_ports.clone(),
            subnet: (config.subnet.network, config.subnet.prefix),
            nameservers,
            allowed: config
                .allowed_networks
                .iter()
                .map(|n| (n.network, n.prefix))
                .collect(),
            only_environments_forward,
        })
        .map_err(|e| e.to_string())
    }

    /// Whether environments get network namespaces of their own.
    pub(crate) fn isolates_network(&self) -> bool {
        self.network.is_ok()
    }

    /// Whether every process is in a cgroup of the daemon's.
    pub(crate) fn tracks_processes(&self) -> bool {
        self.cgroups.is_ok()
    }

    /// Removes the daemon's packet-filter table and cgroup (made again when the runtime opens); its environments'
    /// must be taken down first. The last daemon of the machine to stop turns forwarding off again if a daemon
    /// turned it on.
    pub(crate) fn shut_down(&self) {
        if let Ok(firewall) = &self.network {
            let _ = firewall.uninstall();
        }
        let presence = match self.presence.lock() {
            Ok(mut presence) => presence.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(presence) = presence {
            presence.leave();
        }
        if let Ok(cgroups) = &self.cgroups {
            let _ = cgroups.root().remove();
        }
    }

    /// The link of the environment whose user is `user`: a /30 of the subnet at the user's place in the range.
    fn link(&self, user: u32) -> Link {
        let index = user.saturating_sub(self.config.users.first);
        let base = u32::from(self.config.subnet.network) + 4 * index;
        Link {
            namespace: namespace(user),
            host_interface: interface(user),
            host_address: Ipv4Addr::from(base + 1),
            address: Ipv4Addr::from(base + 2),
        }
    }

    /// Gives the environment its users, cgroup and network (each again if it went missing, e.g. after a reboot);
    /// the limits of an existing cgroup are set to `limits`.
    pub(crate) fn establish(
        &self,
        env: &EnvironmentAddress,
        preview: bool,
        limits: CgroupLimits,
        builder: &Builder,
    ) -> Result<Space, String> {
        let user = self.accounts.assign(&key(env))?;
        let builder_user = self.accounts.assign(&builder.key)?;
        let cgroup = match &self.cgroups {
            Ok(cgroups) => {
                let cgroup = cgroups.group(&[&unit_name(env)]);
                cgroup
                    .create(&limits)
                    .map_err(|e| format!("cannot set the limits of `{}`: {e}", env.environment))?;
                Some(cgroup)
            }
            Err(_) => None,
        };
        let (netns, link) = match &self.network {
            Ok(firewall) => {
                let link = self.link(user);
                let exists = Netns::open(&link.namespace).is_ok()
                    && Path::new("/sys/class/net")
                        .join(&link.host_interface)
                        .exists();
                let netns = Netns::create(&link.namespace).map_err(|e| {
                    format!("cannot make the network of `{}`: {e}", env.environment)
                })?;
                if !exists {
                    // Another daemon of this machine with other --users or --network may have placed an
                    // environment on these addresses: two links on one /30 would mix their traffic.
                    if std::net::TcpListener::bind((link.host_address, 0)).is_ok() {
                        return Err(format!(
                            "cannot link the network of `{}`: {} is already an address of this machine (another daemon's environment?); give each daemon its own --network",
                            env.environment, link.host_address
                        ));
                    }
                    link.create().map_err(|e| {
                        format!("cannot link the network of `{}`: {e}", env.environment)
                    })?;
                }
                firewall
                    .add_interface(&link.host_interface)
                    .map_err(|e| e.to_string())?;
                (Some(Arc::new(netns)), Some(link))
            }
            Err(_) => (None, None),
        };
        Ok(Space {
            user,
            builder: builder_user,
            preview,
            netns,
            link,
            cgroup,
            limits,
        })
    }

    /// Stops everything still running in the environment's cgroup and takes down its cgroup and network.
    pub(crate) async fn take_down(&self, env: &EnvironmentAddress) -> Result<(), String> {
        if let Ok(cgroups) = &self.cgroups {
            let cgroup = cgroups.group(&[&unit_name(env)]);
            cgroup
                .kill_all(Duration::from_secs(10))
                .await
                .map_err(|e| e.to_string())?;
            cgroup.remove().map_err(|e| e.to_string())?;
        }
        if let (Ok(firewall), Some(user)) = (&self.network, self.accounts.get(&key(env))) {
            let link = self.link(user);
            firewall
                .remove_interface(&link.host_interface)
                .map_err(|e| e.to_string())?;
            link.remove();
            Netns::delete(&link.namespace).map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// Removes the accounts of the environment (and of its builder, when no environment uses it any more); their
    /// files must be gone or handed back first.
    pub(crate) fn release(
        &self,
        env: &EnvironmentAddress,
        builder: &Builder,
    ) -> Result<(), String> {
        self.accounts.release(&key(env))?;
        if !self.builder_in_use(env, builder) {
            self.accounts.release(&builder.key)?;
        }
        Ok(())
    }

    /// Whether another environment than `env` builds with `builder` (the project's builder while the project has
    /// environments that are not previews).
    pub(crate) fn builder_in_use(&self, env: &EnvironmentAddress, builder: &Builder) -> bool {
        if builder.seed.is_some() {
            return false;
        }
        let prefix = format!("env:{}/", env.project);
        // Another environment of the project that is not a preview (a preview has a builder of its own).
        self.accounts.all().keys().any(|k| {
            k.starts_with(&prefix)
                && *k != key(env)
                && self
                    .accounts
                    .get(&format!("build:{}", &k["env:".len()..]))
                    .is_none()
        })
    }

    /// Kills whatever an earlier run of the daemon left in its cgroups (it was killed) and removes them.
    pub(crate) async fn stop_strays(&self) -> usize {
        let Ok(cgroups) = &self.cgroups else {
            return 0;
        };
        let root = cgroups.root();
        let left = root.pids().len();
        let _ = root.kill_all(Duration::from_secs(10)).await;
        for child in root.children() {
            for unit in cgroups.group(&[&child]).children() {
                let _ = cgroups.group(&[&child, &unit]).remove();
            }
        }
        left
    }

    /// The sandbox for `work` in `space`, with its cgroup made; and the `HOME` it sees.
    pub(crate) fn sandbox(
        &self,
        env: &EnvironmentAddress,
        space: &Space,
        work: Work<'_>,
    ) -> Result<(Sandbox, PathBuf), String> {
        let inside = layout::inside;
        let bind = |source: &Path, target: PathBuf, writable: bool| Bind {
            source: source.to_path_buf(),
            target,
            writable,
        };
        let (user, unit, limits, mut binds, workdir, home) = match work {
            Work::Checkout {
                git_dir,
                partial,
                scratch,
            } => (
                space.builder,
                "checkout".to_owned(),
                CgroupLimits {
                    tasks: Some(BUILD_TASKS),
                    ..CgroupLimits::default()
                },
                vec![
                    bind(git_dir, inside(layout::REPOSITORY), false),
                    bind(partial, inside(layout::CHECKOUT), true),
                    bind(scratch, PathBuf::from("/tmp"), true),
                ],
                inside(layout::CHECKOUT),
                PathBuf::from("/nonexistent"),
            ),
            Work::Build {
                tree,
                directory,
                builder,
                service,
            } => {
                let mut binds = vec![
                    bind(tree, inside(layout::SOURCE), true),
                    bind(&builder.cache, inside(layout::CACHE), true),
                    bind(&builder.tmp(), PathBuf::from("/tmp"), true),
                    bind(&builder.tmp(), PathBuf::from("/var/tmp"), true),
                ];
                for (host, seen) in self.tools() {
                    binds.push(bind(&host, seen, false));
                }
                (
                    space.builder,
                    format!("build-{service}"),
                    CgroupLimits {
                        tasks: Some(BUILD_TASKS),
                        ..CgroupLimits::default()
                    },
                    binds,
                    inside(layout::SOURCE).join(directory),
                    inside(layout::CACHE).join("home"),
                )
            }
            Work::Run {
                tree,
                directory,
                home,
                tmp,
                unit,
                limits,
            } => (
                space.user,
                unit,
                limits,
                vec![
                    bind(tree, inside(layout::SOURCE), false),
                    bind(home, inside(layout::HOME), true),
                    bind(tmp, PathBuf::from("/tmp"), true),
                    bind(tmp, PathBuf::from("/var/tmp"), true),
                ],
                inside(layout::SOURCE).join(directory),
                inside(layout::HOME),
            ),
        };
        if let Some((file, seen_at)) = &self.resolver {
            binds.push(bind(file, seen_at.clone(), false));
        }
        let cgroup = match &self.cgroups {
            Ok(cgroups) => {
                let cgroup = cgroups.group(&[&unit_name(env), &unit]);
                // A unit left by a process that was killed with its daemon starts afresh.
                cgroup
                    .create(&limits)
                    .map_err(|e| format!("cannot set the limits of {unit}: {e}"))?;
                Some(cgroup)
            }
            Err(_) => None,
        };
        Ok((
            Sandbox {
                uid: user,
                gid: user,
                netns: space.netns.clone(),
                cgroup,
                root: self.config.sandbox_root.clone(),
                system: self.system.clone(),
                binds,
                workdir,
                umask: 0o022,
            },
            home,
        ))
    }

    /// The sandbox of a database server run by `uid`: the host's network (it listens on the host's loopback), its
    /// own directory `root` at `inside` and the system directories, nothing of the daemon's or of environments'.
    pub(crate) fn server_sandbox(&self, uid: u32, root: &Path, inside: &Path) -> Sandbox {
        Sandbox {
            uid,
            gid: uid,
            netns: None,
            cgroup: None,
            root: self.config.sandbox_root.clone(),
            system: self.system.clone(),
            binds: vec![Bind {
                source: root.to_path_buf(),
                target: inside.to_path_buf(),
                writable: true,
            }],
            workdir: inside.to_path_buf(),
            // The directories the sandbox makes for its mounts must stay passable; PostgreSQL makes its own files
            // private whatever the mask.
            umask: 0o022,
        }
    }

    /// The server sandbox above, in a cgroup of its own, `database-servers/<unit>`, that bounds the server's
    /// memory and processes (when the machine has cgroups): what a server's clients can make it hold — Redis's
    /// scripts, which its `maxmemory` does not count — is its own problem, not the machine's.
    pub(crate) fn limited_server_sandbox(
        &self,
        uid: u32,
        root: &Path,
        inside: &Path,
        unit: &str,
        limits: &CgroupLimits,
    ) -> Result<Sandbox, String> {
        let mut sandbox = self.server_sandbox(uid, root, inside);
        if let Ok(cgroups) = &self.cgroups {
            let cgroup = cgroups.group(&[SERVERS_UNIT, unit]);
            cgroup
                .create(limits)
                .map_err(|e| format!("cannot set the limits of the server {unit}: {e}"))?;
            sandbox.cgroup = Some(cgroup);
        }
        Ok(sandbox)
    }

    /// Stops whatever still runs in a server's cgroup (a child it forked) and removes the cgroup.
    pub(crate) async fn remove_server_cgroup(&self, unit: &str) -> Result<(), String> {
        if let Ok(cgroups) = &self.cgroups {
            let cgroup = cgroups.group(&[SERVERS_UNIT, unit]);
            cgroup
                .kill_all(Duration::from_secs(10))
                .await
                .map_err(|e| e.to_string())?;
            cgroup.remove().map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// Each tool directory on the host, and where builds see it.
    pub(crate) fn tools(&self) -> Vec<(PathBuf, PathBuf)> {
        self.config
            .tools
            .iter()
            .filter(|dir| dir.is_dir())
            .enumerate()
            .map(|(i, dir)| {
                (
                    dir.clone(),
                    layout::inside(layout::TOOLS).join(i.to_string()),
                )
            })
            .collect()
    }

    /// What the daemon can enforce, for its report when it starts.
    pub(crate) fn protections(&self) -> Vec<Protection> {
        let range = self.accounts.range();
        vec![
            on(
                "users",
                format!(
                    "each environment's apps and jobs run as a user of its own (ids {}-{}); builds as the project's builder, a preview's as its own",
                    range.first, range.last
                ),
            ),
            on(
                "files",
                "each process has a filesystem of its own: the system's directories read-only, its checkout (read-only), its home and a /tmp of its environment, nothing else of the host; the data directory is private",
            ),
            match &self.network {
                Ok(_) => on(
                    "network",
                    format!(
                        "a network namespace per environment (links in {}, traffic to the internet translated); other environments only through the gateway",
                        self.config.subnet
                    ),
                ),
                Err(reason) => off(
                    "network",
                    format!("environments share the host's network: {reason}"),
                ),
            },
            match &self.cgroups {
                Ok(cgroups) => on(
                    "limits",
                    format!(
                        "memory, CPU and process limits per app and per environment with {}",
                        cgroups.describe()
                    ),
                ),
                Err(reason) => off(
                    "limits",
                    format!("no memory, CPU or process limits: {reason}"),
                ),
            },
        ]
    }

    /// How one environment is kept apart, for `preview env show`.
    pub(crate) fn space_protections(&self, space: &Space) -> Vec<Protection> {
        let mut protections = vec![
            on(
                "users",
                format!(
                    "apps and jobs run as preview-{} (uid {}); builds as preview-{} ({})",
                    space.user,
                    space.user,
                    space.builder,
                    if space.preview {
                        "this preview's own builder"
                    } else {
                        "the project's builder"
                    }
                ),
            ),
            on(
                "files",
                "its processes see the system's directories read-only, their checkout (read-only), their home and the environment's /tmp, nothing else of the host",
            ),
        ];
        protections.push(match (&space.link, &self.network) {
            (Some(link), _) => on(
                "network",
                format!(
                    "network namespace {} at {} (host side {}); other environments only through the gateway",
                    link.namespace, link.address, link.host_address
                ),
            ),
            (None, Err(reason)) => off("network", format!("shares the host's network: {reason}")),
            (None, Ok(_)) => off("network", "shares the host's network".to_owned()),
        });
        protections.push(match &space.cgroup {
            Some(_) => on(
                "limits",
                format!("environment total: {}", describe_limits(&space.limits)),
            ),
            None => off(
                "limits",
                match &self.cgroups {
                    Err(reason) => format!("none: {reason}"),
                    Ok(_) => "none".to_owned(),
                },
            ),
        });
        protections
    }
}

fn on(name: &str, detail: impl Into<String>) -> Protection {
    Protection {
        name: name.to_owned(),
        in_effect: true,
        detail: detail.into(),
    }
}

fn off(name: &str, detail: impl Into<String>) -> Protection {
    Protection {
        name: name.to_owned(),
        in_effect: false,
        detail: detail.into(),
    }
}

/// `cpu 2, memory 4Gi, processes 4096`, or `none` (the numbers as people write them).
pub(crate) fn describe_limits(limits: &CgroupLimits) -> String {
    let mut parts = Vec::new();
    if let Some(millicores) = limits.cpu_millicores {
        parts.push(if millicores.is_multiple_of(1000) {
            format!("cpu {}", millicores / 1000)
        } else {
            format!("cpu {millicores}m")
        });
    }
    if let Some(bytes) = limits.memory_bytes {
        parts.push(format!("memory {}", memory(bytes)));
    }
    if let Some(tasks) = limits.tasks {
        parts.push(format!("processes {tasks}"));
    }
    if parts.is_empty() {
        "none".to_owned()
    } else {
        parts.join(", ")
    }
}

/// `64Mi`, `4Gi`, or bytes when no binary unit divides them.
pub(crate) fn memory(bytes: u64) -> String {
    for (unit, size) in [("Gi", 1u64 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)] {
        if bytes.is_multiple_of(size) {
            return format!("{}{unit}", bytes / size);
        }
    }
    bytes.to_string()
}

/// What the machine gives when the daemon is not root: nothing, said plainly.
pub(crate) fn unprotected(user: &str) -> Vec<Protection> {
    vec![
        off(
            "users",
            format!(
                "apps, jobs and builds of every environment run as {user}, the daemon's user: they can read and signal each other's processes"
            ),
        ),
        off(
            "files",
            format!(
                "they can read and write whatever {user} can, the daemon's data directory (store, master key, logs) included"
            ),
        ),
        off(
            "network",
            "they share the host's network and reach each other's ports",
        ),
        off("limits", "no memory, CPU or process limits"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_parse_or_say_why_not() {
        assert_eq!(Subnet::parse("10.213.0.0/16"), Ok(Subnet::default()));
        for (bad, why) in [
            ("10.213.0.0", "ADDRESS/PREFIX"),
            ("10.213.0.1/16", "host bits"),
            ("10.0.0.0/30", "8 to 28"),
            ("ten/8", "ADDRESS/PREFIX"),
        ] {
            let error = Subnet::parse(bad).expect_err(bad);
            assert!(error.contains(why), "{bad}: {error}");
        }
    }

    #[test]
    fn limits_read_as_written() {
        assert_eq!(
            describe_limits(&CgroupLimits {
                cpu_millicores: Some(2000),
                memory_bytes: Some(4 << 30),
                tasks: Some(4096)
            }),
            "cpu 2, memory 4Gi, processes 4096"
        );
        assert_eq!(
            describe_limits(&CgroupLimits {
                cpu_millicores: Some(250),
                memory_bytes: Some(1000),
                tasks: None
            }),
            "cpu 250m, memory 1000"
        );
        assert_eq!(describe_limits(&CgroupLimits::default()), "none");
    }
}
