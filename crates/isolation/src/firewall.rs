//! The packet filter: one nftables table per daemon that keeps its environments from reaching each other, the
//! host (but the gateway's ports and its resolvers), private networks and the clouds' metadata services (but what
//! the operator allows), lets nothing — from outside or from the host itself — open a connection into them, and
//! translates their traffic to the internet to the host's address.
//!
//! Interfaces are matched by name: every environment's host interface is `pv…`, and this daemon's are listed in
//! the table's `environments` set. A packet must pass every table's chains, so the rules of daemons sharing a
//! machine never open what another's close.

use std::net::Ipv4Addr;

use crate::IsolationError;
use crate::programs::run;

/// What the table says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirewallRules {
    /// `preview_<marker>`.
    pub table: String,
    /// This daemon's environments' host interfaces.
    pub interfaces: Vec<String>,
    /// Where the gateway listens: environments may connect to these ports of the host.
    pub gateway_ports: Vec<u16>,
    /// The addresses environments' links are given (translated on their way out).
    pub subnet: (Ipv4Addr, u8),
    /// The resolvers environments use: reachable on port 53 wherever they are.
    pub nameservers: Vec<Ipv4Addr>,
    /// Private networks environments may reach nonetheless (the operator's choice).
    pub allowed: Vec<(Ipv4Addr, u8)>,
    /// The host forwarded nothing before the daemon turned forwarding on: keep it so for all traffic but the
    /// environments'.
    pub only_environments_forward: bool,
}

/// Destinations environments do not reach unless allowed: private, shared (carrier-grade NAT), link-local (the
/// clouds' metadata services among them), Azure's and Alibaba's metadata addresses, and what is not unicast.
const UNREACHABLE: &str = "0.0.0.0/8, 10.0.0.0/8, 100.64.0.0/10, 100.100.100.200, 168.63.129.16, 169.254.0.0/16, 172.16.0.0/12, 192.168.0.0/16, 224.0.0.0/4, 240.0.0.0/4";

fn list<T: std::fmt::Display>(items: impl IntoIterator<Item = T>) -> String {
    items
        .into_iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

impl FirewallRules {
    /// The nftables script that replaces the whole table at once.
    pub fn render(&self) -> String {
        let table = &self.table;
        let mut lines = vec![
            format!("table inet {table} {{}}"),
            format!("delete table inet {table}"),
            format!("table inet {table} {{"),
            "\tset environments {".to_owned(),
            "\t\ttype ifname".to_owned(),
        ];
        if !self.interfaces.is_empty() {
            let names = self.interfaces.iter().map(|i| format!("\"{i}\""));
            lines.push(format!("\t\telements = {{ {} }}", list(names)));
        }
        lines.push("\t}".to_owned());
        let dns = (!self.nameservers.is_empty()).then(|| {
            format!(
                "\t\tiifname @environments ip daddr {{ {} }} meta l4proto {{ tcp, udp }} th dport 53 accept",
                list(&self.nameservers)
            )
        });
        lines.push("\tchain input {".to_owned());
        lines.push("\t\ttype filter hook input priority 0; policy accept;".to_owned());
        lines.push("\t\tiifname @environments ct state established,related accept".to_owned());
        if !self.gateway_ports.is_empty() {
            lines.push(format!(
                "\t\tiifname @environments tcp dport {{ {} }} accept",
                list(&self.gateway_ports)
            ));
        }
        lines.extend(dns.clone());
        lines.push("\t\tiifname @environments drop".to_owned());
        lines.push("\t}".to_owned());
        lines.push("\tchain forward {".to_owned());
        lines.push("\t\ttype filter hook forward priority 0; policy accept;".to_owned());
        lines.push("\t\tiifname @environments oifname \"pv*\" drop".to_owned());
        if !self.allowed.is_empty() {
            let allowed = self.allowed.iter().map(|(n, p)| format!("{n}/{p}"));
            lines.push(format!(
                "\t\tiifname @environments ip daddr {{ {} }} accept",
                list(allowed)
            ));
        }
        lines.extend(dns);
        lines.push(format!(
            "\t\tiifname @environments ip daddr {{ {UNREACHABLE} }} drop"
        ));
        lines.push("\t\tiifname @environments meta nfproto ipv6 drop".to_owned());
        lines.push("\t\toifname @environments ct state established,related accept".to_owned());
        lines.push("\t\toifname @environments drop".to_owned());
        if self.only_environments_forward {
            lines.push("\t\tiifname != \"pv*\" oifname != \"pv*\" drop".to_owned());
        }
        lines.push("\t}".to_owned());
        // The host itself opens nothing into an environment either: the daemon reaches apps from inside.
        lines.push("\tchain output {".to_owned());
        lines.push("\t\ttype filter hook output priority 0; policy accept;".to_owned());
        lines.push("\t\toifname @environments ct state established,related accept".to_owned());
        lines.push("\t\toifname @environments drop".to_owned());
        lines.push("\t}".to_owned());
        let (network, prefix) = self.subnet;
        lines.push("\tchain postrouting {".to_owned());
        lines.push("\t\ttype nat hook postrouting priority 100; policy accept;".to_owned());
        lines.push(format!(
            "\t\tip saddr {network}/{prefix} oifname != \"pv*\" masquerade"
        ));
        lines.push("\t}".to_owned());
        lines.push("}".to_owned());
        lines.join("\n") + "\n"
    }
}

/// The daemon's table, installed.
#[derive(Debug)]
pub struct Firewall {
    table: String,
}

impl Firewall {
    /// Replaces the daemon's table with `rules`, in one transaction.
    pub fn install(rules: &FirewallRules) -> Result<Firewall, IsolationError> {
        run("nft", &["-f", "-"], Some(&rules.render()))?;
        Ok(Firewall {
            table: rules.table.clone(),
        })
    }

    /// Puts an environment's host interface under the rules.
    pub fn add_interface(&self, interface: &str) -> Result<(), IsolationError> {
        let script = format!(
            "add element inet {} environments {{ \"{interface}\" }}\n",
            self.table
        );
        run("nft", &["-f", "-"], Some(&script))
    }

    /// Takes an environment's host interface out of the set; nothing to do when it is not in it.
    pub fn remove_interface(&self, interface: &str) -> Result<(), IsolationError> {
        let script = format!(
            "add element inet {table} environments {{ \"{interface}\" }}\ndelete element inet {table} environments {{ \"{interface}\" }}\n",
            table = self.table
        );
        run("nft", &["-f", "-"], Some(&script))
    }

    /// Removes this table.
    pub fn uninstall(&self) -> Result<(), IsolationError> {
        Firewall::remove(&self.table)
    }

    /// Removes the table `table`; nothing to do when it does not exist.
    pub fn remove(table: &str) -> Result<(), IsolationError> {
        run(
            "nft",
            &["-f", "-"],
            Some(&format!(
                "table inet {table} {{}}\ndelete table inet {table}\n"
            )),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_closes_environments_off_and_opens_the_gateway_and_their_resolvers() {
        let rules = FirewallRules {
            table: "preview_ab12".to_owned(),
            interfaces: vec!["pv50000".to_owned(), "pv50001".to_owned()],
            gateway_ports: vec![8080, 8443],
            subnet: (Ipv4Addr::new(10, 213, 0, 0), 16),
            nameservers: vec![Ipv4Addr::new(10, 255, 255, 53)],
            allowed: vec![(Ipv4Addr::new(10, 20, 0, 0), 16)],
            only_environments_forward: true,
        };
        let expected = "\
table inet preview_ab12 {}
delete table inet preview_ab12
table inet preview_ab12 {
\tset environments {
\t\ttype ifname
\t\telements = { \"pv50000\", \"pv50001\" }
\t}
\tchain input {
\t\ttype filter hook input priority 0; policy accept;
\t\tiifname @environments ct state established,related accept
\t\tiifname @environments tcp dport { 8080, 8443 } accept
\t\tiifname @environments ip daddr { 10.255.255.53 } meta l4proto { tcp, udp } th dport 53 accept
\t\tiifname @environments drop
\t}
\tchain forward {
\t\ttype filter hook forward priority 0; policy accept;
\t\tiifname @environments oifname \"pv*\" drop
\t\tiifname @environments ip daddr { 10.20.0.0/16 } accept
\t\tiifname @environments ip daddr { 10.255.255.53 } meta l4proto { tcp, udp } th dport 53 accept
\t\tiifname @environments ip daddr { 0.0.0.0/8, 10.0.0.0/8, 100.64.0.0/10, 100.100.100.200, 168.63.129.16, 169.254.0.0/16, 172.16.0.0/12, 192.168.0.0/16, 224.0.0.0/4, 240.0.0.0/4 } drop
\t\tiifname @environments meta nfproto ipv6 drop
\t\toifname @environments ct state established,related accept
\t\toifname @environments drop
\t\tiifname != \"pv*\" oifname != \"pv*\" drop
\t}
\tchain output {
\t\ttype filter hook output priority 0; policy accept;
\t\toifname @environments ct state established,related accept
\t\toifname @environments drop
\t}
\tchain postrouting {
\t\ttype nat hook postrouting priority 100; policy accept;
\t\tip saddr 10.213.0.0/16 oifname != \"pv*\" masquerade
\t}
}
";
        assert_eq!(rules.render(), expected);
    }

    #[test]
    fn an_empty_daemon_has_an_empty_set_and_no_port_rules() {
        let rules = FirewallRules {
            table: "preview_ab12".to_owned(),
            interfaces: Vec::new(),
            gateway_ports: Vec::new(),
            subnet: (Ipv4Addr::new(10, 213, 0, 0), 16),
            nameservers: Vec::new(),
            allowed: Vec::new(),
            only_environments_forward: false,
        };
        let text = rules.render();
        assert!(!text.contains("elements"), "{text}");
        assert!(!text.contains("dport"), "{text}");
        assert!(!text.contains("} accept\n"), "{text}");
        assert!(!text.contains("iifname != "), "{text}");
        assert!(text.contains("\t\tiifname @environments drop\n"), "{text}");
    }
}
