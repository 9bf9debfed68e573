//! [`Yaml`]: a tree of maps, lists and scalars, written out in block or flow style, and
//! the proptest strategies that make random ones: free trees ([`tree`]) and trees shaped
//! like a quota file with random values ([`quota_file`]).

use proptest::prelude::*;

/// A YAML node.
#[derive(Clone, Debug)]
pub enum Yaml {
    /// A scalar, written as it is (`plain`) or double-quoted.
    Scalar {
        text: String,
        plain: bool,
    },
    Map(Vec<(String, Yaml)>),
    List(Vec<Yaml>),
}

impl Yaml {
    /// A scalar written as it is.
    pub fn plain(text: &str) -> Yaml {
        Yaml::Scalar {
            text: text.to_owned(),
            plain: true,
        }
    }

    /// The document: collections in flow style (`{k: v}`, `[a]`) or block style.
    pub fn render(&self, flow: bool) -> String {
        let mut out = String::new();
        if flow || self.is_inline() {
            self.inline(&mut out);
            out.push('\n');
        } else {
            self.block(0, &mut out);
        }
        out
    }

    /// Whether the node goes on its parent's line in block style: scalars and empty
    /// collections.
    fn is_inline(&self) -> bool {
        match self {
            Yaml::Scalar { .. } => true,
            Yaml::Map(entries) => entries.is_empty(),
            Yaml::List(items) => items.is_empty(),
        }
    }

    fn inline(&self, out: &mut String) {
        match self {
            Yaml::Scalar { text, plain } => scalar(text, *plain, out),
            Yaml::Map(entries) => {
                out.push('{');
                for (i, (key, value)) in entries.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    scalar(key, true, out);
                    out.push_str(": ");
                    value.inline(out);
                }
                out.push('}');
            }
            Yaml::List(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    item.inline(out);
                }
                out.push(']');
            }
        }
    }

    /// A collection in block style at `indent` spaces (a scalar or an empty collection
    /// inline).
    fn block(&self, indent: usize, out: &mut String) {
        let pad = " ".repeat(indent);
        let child = |node: &Yaml, out: &mut String| {
            if node.is_inline() {
                out.push(' ');
                node.inline(out);
                out.push('\n');
            } else {
                out.push('\n');
                node.block(indent + 2, out);
            }
        };
        match self {
            Yaml::Map(entries) if !entries.is_empty() => {
                for (key, value) in entries {
                    out.push_str(&pad);
                    scalar(key, true, out);
                    out.push(':');
                    child(value, out);
                }
            }
            Yaml::List(items) if !items.is_empty() => {
                for item in items {
                    out.push_str(&pad);
                    out.push('-');
                    child(item, out);
                }
            }
            _ => {
                out.push_str(&pad);
                self.inline(out);
                out.push('\n');
            }
        }
    }
}

/// Writes `text` plain when asked and it is a word YAML reads back as itself, else
/// double-quoted (JSON's escapes are YAML's).
fn scalar(text: &str, plain: bool, out: &mut String) {
    let word = |c: char| c.is_ascii_alphanumeric() || "_/.*-+".contains(c);
    if plain && !text.is_empty() && text.chars().all(word) && !text.starts_with(['-', '*']) {
        out.push_str(text);
    } else {
        out.push_str(&serde_json::to_string(text).expect("a string encodes"));
    }
}

/// The keys of quota files, `local` sections and `kind: RateLimit` resources.
const KEYS: &[&str] = &[
    "domain",
    "descriptors",
    "key",
    "value",
    "rate_limit",
    "rate_limits",
    "unit",
    "requests_per_unit",
    "unlimited",
    "name",
    "replaces",
    "shadow_mode",
    "quota_mode",
    "detailed_metric",
    "value_to_metric",
    "share_threshold",
    "metadata",
    "algorithm",
    "burst",
    "unit_multiplier",
    "local",
    "token_bucket",
    "max_tokens",
    "tokens_per_fill",
    "fill_interval",
    "entries",
    "filter_enabled",
    "filter_enforced",
    "status",
    "kind",
    "apiVersion",
    "spec",
];

/// Scalars of every type the files hold, at and past their bounds, and random text.
fn scalar_value() -> impl Strategy<Value = Yaml> {
    let words = prop::sample::select(vec![
        "0",
        "1",
        "-1",
        "7",
        "4294967295",
        "4294967296",
        "18446744073709551616",
        "1e400",
        "0.5",
        ".nan",
        "true",
        "false",
        "null",
        "~",
        "second",
        "minute",
        "hour",
        "day",
        "week",
        "month",
        "year",
        "fortnight",
        "token_bucket",
        "fixed_window",
        "1s",
        "0s",
        "100ms",
        "10000000000000d",
        "k",
        "v",
        "/api/*",
        "*",
        "RateLimit",
        "quota.rls.dev/v1alpha1",
    ]);
    prop_oneof![
        6 => words.prop_map(Yaml::plain),
        1 => "\\PC{0,10}".prop_map(|text| Yaml::Scalar { text, plain: false }),
        1 => (1usize..=3).prop_map(|k| Yaml::plain(&"z".repeat(k * 10_000))),
    ]
}

/// `valid`, or with `wild` sometimes any scalar instead.
fn or_wild(valid: impl Strategy<Value = Yaml> + 'static, wild: bool) -> BoxedStrategy<Yaml> {
    if wild {
        prop_oneof![8 => valid, 1 => scalar_value()].boxed()
    } else {
        valid.boxed()
    }
}

fn words(words: &[&'static str]) -> BoxedStrategy<Yaml> {
    prop::sample::select(words.to_vec())
        .prop_map(Yaml::plain)
        .boxed()
}

fn unit(wild: bool) -> BoxedStrategy<Yaml> {
    let units = ["second", "minute", "hour", "day", "week", "month", "year"];
    or_wild(words(&units), wild)
}

/// A count from 1 to 19; with `wild`, also 0, the bounds of `u32` and past them.
fn number(wild: bool) -> BoxedStrategy<Yaml> {
    let small = (1u64..20).prop_map(|n| Yaml::plain(&n.to_string()));
    if !wild {
        return small.boxed();
    }
    let edges = prop::sample::select(vec![0, u64::from(u32::MAX), 1 << 31, 1 << 32, u64::MAX])
        .prop_map(|n| Yaml::plain(&n.to_string()));
    or_wild(prop_oneof![4 => small, 1 => edges], wild)
}

fn algorithm(wild: bool) -> BoxedStrategy<Yaml> {
    or_wild(words(&["token_bucket", "fixed_window"]), wild)
}

fn flag(wild: bool) -> BoxedStrategy<Yaml> {
    or_wild(words(&["true", "false"]), wild)
}

/// A descriptor's value: exact, a wildcard, empty.
fn descriptor_value(wild: bool) -> BoxedStrategy<Yaml> {
    or_wild(words(&["v", "w", "/api/*", "*", "x*", ""]), wild)
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => prop::sample::select(KEYS).prop_map(str::to_owned),
        1 => "[a-z_]{1,8}",
    ]
}

/// Any tree: maps keyed mostly by the files' keys, lists, scalars; up to 6 levels.
pub fn tree() -> impl Strategy<Value = Yaml> {
    scalar_value().prop_recursive(6, 96, 6, |inner| {
        prop_oneof![
            prop::collection::vec((key(), inner.clone()), 0..6).prop_map(Yaml::Map),
            prop::collection::vec(inner, 0..6).prop_map(Yaml::List),
        ]
    })
}

/// A field of a map: its name, its values, the odds it is present.
type Field = (&'static str, BoxedStrategy<Yaml>, f64);

/// A map of `fields`, each present at its odds, its value of the field's kind or, with
/// `wild`, 1 time in 40 any tree.
fn fields(fields: Vec<Field>, wild: bool) -> impl Strategy<Value = Yaml> {
    let each: Vec<_> = fields
        .into_iter()
        .map(|(name, value, odds)| {
            let value = if wild {
                prop_oneof![39 => value, 1 => tree()].boxed()
            } else {
                value
            };
            let field = move |v: Yaml| (name.to_owned(), v);
            if odds >= 1.0 {
                value.prop_map(move |v| Some(field(v))).boxed()
            } else if odds <= 0.0 {
                Just(None).boxed()
            } else {
                prop::option::weighted(odds, value)
                    .prop_map(move |v| v.map(field))
                    .boxed()
            }
        })
        .collect();
    each.prop_map(|present| Yaml::Map(present.into_iter().flatten().collect()))
}

fn limit(wild: bool) -> impl Strategy<Value = Yaml> {
    let name = words(&["a", "b", "login"]);
    let replaces = prop::collection::vec(
        name.clone()
            .prop_map(|n| Yaml::Map(vec![("name".to_owned(), n)])),
        0..3,
    )
    .prop_map(Yaml::List);
    // Without `wild`, the fields that make a valid limit together: either a unit and a
    // count, or `unlimited` alone.
    let unlimited = if wild { 0.3 } else { 0.0 };
    let extra = if wild { 0.3 } else { 0.1 };
    fields(
        vec![
            ("unit", unit(wild), 1.0 - unlimited / 3.0),
            ("requests_per_unit", number(wild), 1.0 - unlimited / 3.0),
            ("unlimited", flag(wild), unlimited),
            ("name", name.boxed(), extra),
            ("replaces", replaces.boxed(), extra),
            ("algorithm", algorithm(wild), 0.3),
            ("burst", number(wild), extra),
            ("unit_multiplier", number(wild), 0.3),
        ],
        wild,
    )
}

fn descriptor(wild: bool) -> impl Strategy<Value = Yaml> {
    let leaf = move || {
        let keys = (0..12u8).prop_map(|k| Yaml::plain(&format!("k{k}")));
        let limits = prop::collection::vec(limit(wild), 1..3).prop_map(Yaml::List);
        vec![
            ("key", keys.boxed(), if wild { 0.95 } else { 1.0 }),
            ("value", descriptor_value(wild), 0.3),
            ("rate_limit", limit(wild).boxed(), 0.6),
            ("rate_limits", limits.boxed(), if wild { 0.3 } else { 0.0 }),
            ("shadow_mode", flag(wild), 0.3),
            ("quota_mode", flag(wild), 0.3),
            ("share_threshold", flag(wild), if wild { 0.3 } else { 0.0 }),
            ("detailed_metric", flag(wild), 0.3),
        ]
    };
    fields(leaf(), wild).prop_recursive(4, 48, 4, move |inner| {
        let mut with_children = leaf();
        let children = prop::collection::vec(inner, 0..4).prop_map(Yaml::List);
        with_children.push(("descriptors", children.boxed(), 0.4));
        fields(with_children, wild)
    })
}

/// A `local` section; only with `wild` are its values of any kind.
fn local(wild: bool) -> impl Strategy<Value = Yaml> {
    let count = move || number(wild);
    let interval = or_wild(words(&["1s", "100ms", "1m"]), wild);
    let bucket = move || {
        fields(
            vec![
                ("max_tokens", count(), 1.0),
                ("tokens_per_fill", count(), 0.5),
                ("fill_interval", interval.clone(), 1.0),
            ],
            wild,
        )
    };
    let entry = fields(
        vec![
            ("key", or_wild(words(&["k0", "k1", "path"]), wild), 1.0),
            ("value", descriptor_value(wild), 0.5),
        ],
        wild,
    );
    let entries = prop::collection::vec(entry, 1..3).prop_map(Yaml::List);
    let descriptor = fields(
        vec![
            ("entries", entries.boxed(), 1.0),
            ("token_bucket", bucket().boxed(), 1.0),
        ],
        wild,
    );
    let descriptors = prop::collection::vec(descriptor, 0..3).prop_map(Yaml::List);
    fields(
        vec![
            ("token_bucket", bucket().boxed(), 0.9),
            ("descriptors", descriptors.boxed(), 0.7),
            ("filter_enabled", or_wild(words(&["100", "50"]), wild), 0.3),
            ("status", or_wild(words(&["429", "503"]), wild), 0.3),
        ],
        wild,
    )
}

/// A quota file's document: a domain, descriptors nested up to 5 levels, sometimes a
/// `local` section. Half are made only of valid values (so that loading goes past the
/// first field and the set is served); half have values of any kind, often huge.
pub fn quota_file() -> impl Strategy<Value = Yaml> {
    any::<bool>().prop_flat_map(|wild| {
        let domain = or_wild(words(&["edge", "d"]), wild);
        let descriptors = prop::collection::vec(descriptor(wild), 0..6).prop_map(Yaml::List);
        fields(
            vec![
                ("domain", domain, 1.0),
                ("descriptors", descriptors.boxed(), 1.0),
                ("local", local(wild).boxed(), 0.2),
            ],
            wild,
        )
    })
}
