//! The packet filter: one nftables table per daemon that keeps its environments from reaching each other, the
//! host and the cloud's metadata address, lets nothing from outside open a connection into them, lets them reach
//! the gateway's ports like any client, and translates their traffic to the internet to the host's address.
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
    /// The host forwarded nothing before the daemon turned forwarding on: keep it so for all traffic but the
    /// environments'.
    pub only_environments_forward: bool,
}

impl FirewallRules {
    /// The nftables script that replaces the whole table at once.
    pub fn render(&self) -> String {
        let table = &self.table;
        let mut text =
            format!("table inet {table} {{}}\ndelete table inet {table}\ntable inet {table} {{\n");
        text.push_str("\tset environments {\n\t\ttype ifname\n");
        if !self.interfaces.is_empty() {
            let names: Vec<String> = self.interfaces.iter().map(|i| format!("\"{i}\"")).collect();
            text.push_str(&format!("\t\telements = {{ {} }}\n", names.join(", ")));
        }
        text.push_str("\t}\n");
        text.push_str("\tchain input {\n\t\ttype filter hook input priority 0; policy accept;\n");
        text.push_str("\t\tiifname @environments ct state established,related accept\n");
        if !self.gateway_ports.is_empty() {
            let ports: Vec<String> = self.gateway_ports.iter().map(u16::to_string).collect();
            text.push_str(&format!(
                "\t\tiifname @environments tcp dport {{ {} }} accept\n",
                ports.join(", ")
            ));
        }
        text.push_str("\t\tiifname @environments drop\n\t}\n");
        text.push_str(
            "\tchain forward {\n\t\ttype filter hook forward priority 0; policy accept;\n",
        );
        text.push_str("\t\tiifname @environments oifname \"pv*\" drop\n");
        text.push_str("\t\tiifname @environments ip daddr 169.254.0.0/16 drop\n");
        text.push_str("\t\tiifname @environments meta nfproto ipv6 drop\n");
        text.push_str("\t\toifname @environments ct state established,related accept\n");
        text.push_str("\t\toifname @environments drop\n");
        if self.only_environments_forward {
            text.push_str("\t\tiifname != \"pv*\" oifname != \"pv*\" drop\n");
        }
        text.push_str("\t}\n");
        let (network, prefix) = self.subnet;
        text.push_str(
            "\tchain postrouting {\n\t\ttype nat hook postrouting priority 100; policy accept;\n",
        );
        text.push_str(&format!(
            "\t\tip saddr {network}/{prefix} oifname != \"pv*\" masquerade\n\t}}\n}}\n"
        ));
        text
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
    fn the_table_closes_environments_off_and_opens_the_gateway() {
        let rules = FirewallRules {
            table: "preview_ab12".to_owned(),
            interfaces: vec!["pv50000".to_owned(), "pv50001".to_owned()],
            gateway_ports: vec![8080, 8443],
            subnet: (Ipv4Addr::new(10, 213, 0, 0), 16),
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
\t\tiifname @environments drop
\t}
\tchain forward {
\t\ttype filter hook forward priority 0; policy accept;
\t\tiifname @environments oifname \"pv*\" drop
\t\tiifname @environments ip daddr 169.254.0.0/16 drop
\t\tiifname @environments meta nfproto ipv6 drop
\t\toifname @environments ct state established,related accept
\t\toifname @environments drop
\t\tiifname != \"pv*\" oifname != \"pv*\" drop
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
    fn an_empty_daemon_has_an_empty_set_and_no_port_rule() {
        let rules = FirewallRules {
            table: "preview_ab12".to_owned(),
            interfaces: Vec::new(),
            gateway_ports: Vec::new(),
            subnet: (Ipv4Addr::new(10, 213, 0, 0), 16),
            only_environments_forward: false,
        };
        let text = rules.render();
        assert!(!text.contains("elements"), "{text}");
        assert!(!text.contains("dport"), "{text}");
        assert!(!text.contains("iifname != "), "{text}");
        assert!(text.contains("\t\tiifname @environments drop\n"), "{text}");
    }
}
