//! The parser and validator return diagnostics for any input; they never panic.

use preview_spec::parse_spec;
use proptest::prelude::*;

const EXAMPLE: &str = include_str!("../../../examples/shop/preview.yaml");

/// Words the spec uses as keys and values, so that generated documents reach deep into validation.
const WORDS: &[&str] = &[
    "project",
    "domain",
    "base",
    "hostname",
    "isolation",
    "runtime",
    "variables",
    "secrets",
    "services",
    "environments",
    "previews",
    "type",
    "app",
    "database",
    "job",
    "build",
    "run",
    "image",
    "ports",
    "name",
    "port",
    "health",
    "http",
    "tcp",
    "replicas",
    "resources",
    "cpu",
    "memory",
    "processes",
    "limits",
    "public",
    "domains",
    "depends_on",
    "engine",
    "postgres",
    "version",
    "mode",
    "managed",
    "clone",
    "policy",
    "seed",
    "masked",
    "empty",
    "from",
    "file",
    "masking",
    "tables",
    "key",
    "same_as",
    "hook",
    "command",
    "blueprint",
    "overrides",
    "ttl",
    "max_live",
    "forge",
    "kind",
    "github",
    "repository",
    "webhook_secret",
    "staging",
    "production",
    "web",
    "db",
    "alias",
    "withhold",
    "substitute",
    "{service}-{env}",
    "*.example.com",
    "{env}.example.com",
    "72h",
    "true",
    "~",
    "0",
    "8080",
    "16",
    "250m",
    "4Gi",
    "users",
    "email",
    "<<",
];

#[derive(Debug, Clone)]
enum Yaml {
    Scalar(String),
    List(Vec<Yaml>),
    Map(Vec<(String, Yaml)>),
}

fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::sample::select(WORDS).prop_map(str::to_owned),
        1 => "[a-zA-Z0-9_.*{}-]{0,12}",
    ]
}

fn yaml() -> impl Strategy<Value = Yaml> {
    let leaf = word().prop_map(Yaml::Scalar);
    leaf.prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(Yaml::List),
            proptest::collection::vec((word(), inner), 0..6).prop_map(Yaml::Map),
        ]
    })
}

/// Block style, with scalars quoted when they would not survive as plain text.
fn render(value: &Yaml, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match value {
        Yaml::Scalar(text) => {
            out.push_str(&format!(" {}\n", scalar(text)));
        }
        Yaml::List(items) if items.is_empty() => out.push_str(" []\n"),
        Yaml::Map(entries) if entries.is_empty() => out.push_str(" {}\n"),
        Yaml::List(items) => {
            out.push('\n');
            for item in items {
                out.push_str(&format!("{pad}-"));
                render(item, indent + 2, out);
            }
        }
        Yaml::Map(entries) => {
            out.push('\n');
            for (key, item) in entries {
                out.push_str(&format!("{pad}{}:", scalar(key)));
                render(item, indent + 2, out);
            }
        }
    }
}

fn scalar(text: &str) -> String {
    if text.is_empty() || text.contains(['{', '}', '*', '<', '~']) {
        format!("'{text}'")
    } else {
        text.to_owned()
    }
}

fn document(root: &[(String, Yaml)]) -> String {
    let mut out = String::new();
    for (key, value) in root {
        out.push_str(&format!("{}:", scalar(key)));
        render(value, 2, &mut out);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = parse_spec("fuzz.yaml", &text);
    }

    #[test]
    fn arbitrary_yaml_built_from_spec_words(root in proptest::collection::vec((word(), yaml()), 0..8)) {
        let text = document(&root);
        if let Err(diagnostics) = parse_spec("fuzz.yaml", &text) {
            prop_assert!(!diagnostics.errors.is_empty());
            for error in &diagnostics.errors {
                prop_assert!(error.position.line >= 1 && error.position.column >= 1, "{error}");
            }
        }
    }

    #[test]
    fn edits_of_the_example(edits in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..5, word()), 1..6)) {
        let mut lines: Vec<String> = EXAMPLE.lines().map(str::to_owned).collect();
        for (at, action, word) in edits {
            let i = at.index(lines.len());
            match action {
                0 => { lines.remove(i); }
                1 => lines.insert(i, lines[i].clone()),
                2 => lines[i] = lines[i].replacen("  ", "\t", 1),
                3 => lines[i].push_str(&format!(" {word}")),
                _ => lines[i] = lines[i].replace(':', &format!(": {word}")),
            }
            if lines.is_empty() { break; }
        }
        let _ = parse_spec("fuzz.yaml", &lines.join("\n"));
    }
}

#[test]
fn alias_bomb_is_refused_not_expanded() {
    let mut spec = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        let prev = i - 1;
        spec.push_str(&format!("a{i}: &a{i} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"));
    }
    let errors = parse_spec("bomb.yaml", &spec).expect_err("the spec is invalid");
    assert!(
        errors
            .errors
            .iter()
            .any(|e| e.message.contains("expands to more than")),
        "{errors}"
    );
}

#[test]
fn deep_nesting_is_refused() {
    let flow = format!("project: {}{}", "[".repeat(10_000), "]".repeat(10_000));
    let block: String = (0..200)
        .map(|depth| format!("{}k:\n", "  ".repeat(depth)))
        .collect();
    for spec in [flow, block] {
        let errors = parse_spec("deep.yaml", &spec).expect_err("the spec is invalid");
        assert!(errors.to_string().contains("nests"), "{errors}");
    }
}
