//! How deep and how large a quota file may be (`LoadOptions::max_depth` and `max_nodes`),
//! refused in plain words at the place that passes the bound, a file that is not UTF-8
//! refused at its first bad byte, and the bytes of key paths a load's rules keep bounded by
//! its text.

mod shapes;

use std::io::Write;

use config::{
    ConfigError, DEFAULT_MAX_DEPTH, DEFAULT_MAX_NODES, LoadOptions, METADATA_NESTING,
    PATH_BYTES_FLOOR, PATH_BYTES_PER_BYTE, QuotaSet,
};

/// A domain whose descriptors nest `levels` deep, each level one `key: lN`, the deepest
/// with a rate limit that replaces another (the deepest YAML a limit has), and `extra`
/// (indented to its level) after it.
fn nested(levels: usize, extra: &str) -> String {
    let mut yaml = String::from("domain: d\n");
    for level in 0..levels {
        let indent = " ".repeat(4 * level);
        yaml.push_str(&format!(
            "{indent}descriptors:\n{indent}  - key: l{level}\n"
        ));
    }
    let indent = " ".repeat(4 * levels);
    yaml.push_str(&format!(
        "{indent}rate_limit: {{unit: second, requests_per_unit: 1, replaces: [{{name: x}}]}}\n"
    ));
    for line in extra.lines() {
        yaml.push_str(&format!("{indent}{line}\n"));
    }
    yaml
}

fn load(yaml: &str, options: &LoadOptions) -> Result<QuotaSet, ConfigError> {
    QuotaSet::from_sources([("q.yaml", yaml)], options)
}

/// `descriptors[0].descriptors[0]...`, `levels` deep.
fn path(levels: usize) -> String {
    vec!["descriptors[0]"; levels].join(".")
}

// Reproduces `budget breached: Depth { depth: 65 }` for a file of 32 levels, one fewer than
// a request's default 32 entries need.
#[test]
fn descriptors_nest_as_deep_as_a_request_has_entries() {
    assert_eq!(DEFAULT_MAX_DEPTH, 32);
    let quotas = load(&nested(32, ""), &LoadOptions::default()).expect("32 levels load");
    let keys: Vec<String> = (0..32).map(|l| format!("l{l}")).collect();
    let entries: Vec<(&str, &str)> = keys.iter().map(|k| (k.as_str(), "v")).collect();
    assert!(quotas.domain("d").unwrap().resolve(&entries).is_some());
}

#[test]
fn one_level_more_is_refused_in_plain_words_at_that_descriptor() {
    let err = load(&nested(33, ""), &LoadOptions::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "q.yaml:67:133: {}: descriptors nested more than 32 levels deep (at most 32 are \
             allowed: a request descriptor has at most that many entries)",
            path(33)
        )
    );
    assert!(matches!(err, ConfigError::TooDeep { max: 32, .. }));
}

#[test]
fn far_deeper_descriptors_are_refused_while_parsing_at_the_first_descriptor_past_the_bound() {
    let err = load(&nested(200, ""), &LoadOptions::default()).unwrap_err();
    assert!(matches!(err, ConfigError::TooDeep { max: 32, .. }), "{err}");
    assert_eq!(err.key_path(), Some(path(33).as_str()));
    assert_eq!(err.position().map(|p| p.line), Some(67));
}

// Reproduces a stack overflow: parsing recurses once per level, and a file at the default
// depth overflowed a 2 MiB thread (a tokio worker's, a test's) in an unoptimised build.
#[test]
fn a_file_at_the_largest_depth_loads_from_a_thread_with_a_small_stack() {
    let loaded = std::thread::Builder::new()
        .stack_size(128 << 10)
        .spawn(|| load(&nested(DEFAULT_MAX_DEPTH, ""), &LoadOptions::default()).is_ok())
        .expect("thread")
        .join()
        .expect("no overflow");
    assert!(loaded);
}

#[test]
fn the_depth_is_an_option() {
    let options = LoadOptions {
        max_depth: 3,
        ..LoadOptions::default()
    };
    load(&nested(3, ""), &options).expect("3 levels load");
    let err = load(&nested(4, ""), &options).unwrap_err();
    assert_eq!(err.key_path(), Some(path(4).as_str()));
    let options = LoadOptions {
        max_depth: 64,
        ..LoadOptions::default()
    };
    load(&nested(64, ""), &options).expect("64 levels load");
}

#[test]
fn metadata_nests_a_fixed_number_of_levels_below_the_deepest_descriptor() {
    let metadata = |levels: usize| {
        let mut text = String::from("metadata:\n");
        for level in 1..levels {
            text.push_str(&format!("{}k{level}:\n", "  ".repeat(level)));
        }
        text.push_str(&format!("{}leaf: 1\n", "  ".repeat(levels)));
        text
    };
    let yaml = nested(32, &metadata(METADATA_NESTING));
    load(&yaml, &LoadOptions::default()).expect("metadata at the bound loads");
    let err = load(
        &nested(32, &metadata(METADATA_NESTING + 1)),
        &LoadOptions::default(),
    )
    .unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(err, ConfigError::NestedTooDeep { max: 81, .. }),
        "{message}"
    );
    assert!(
        message.contains(".metadata.k1.k2.k3.k4.k5.k6.k7.k8.k9.k10.k11.k12.k13.k14.k15.k16")
            && message
                .ends_with(": maps and lists nested more than 81 levels deep (the most allowed)"),
        "{message}"
    );
}

#[test]
fn a_file_with_more_nodes_than_allowed_is_refused_in_plain_words() {
    let options = LoadOptions {
        max_nodes: 20,
        ..LoadOptions::default()
    };
    let yaml = "domain: d\ndescriptors:\n  - key: a\n  - key: b\n  - key: c\n  - key: d\n  - key: e\n  - key: f\n";
    load(yaml, &options).expect_err("over 20 nodes");
    assert_eq!(
        load(yaml, &options).unwrap_err().to_string(),
        "q.yaml:8:5: descriptors[5]: more than 20 YAML nodes (maps, lists and values) in one \
         file (the most allowed)"
    );
    let options = LoadOptions {
        max_nodes: 30,
        ..LoadOptions::default()
    };
    load(yaml, &options).expect("within 30 nodes");
}

// Reproduces a non-UTF-8 file refused as "stream did not contain valid UTF-8", without a
// position.
#[test]
fn rules_under_a_long_key_keep_at_most_a_budget_of_paths_that_grows_with_the_text() {
    assert_eq!(PATH_BYTES_FLOOR, 1 << 20, "the docs say 1 MiB");
    // Realistic: ten thousand rules under a 200-byte key and value.
    let text = shapes::long_parent(200, 10_000);
    let set = load(&text, &LoadOptions::default()).expect("loads");
    assert_eq!(set.rule_count(), 10_000);
    // Each of 400 rules would keep a path of 128 KiB: 50 MiB for a file of 100 KiB.
    let text = shapes::long_parent(64 * 1024, 400);
    let allowed = PATH_BYTES_FLOOR + PATH_BYTES_PER_BYTE * text.len();
    let error = load(&text, &LoadOptions::default()).expect_err("refused");
    let message = error.to_string();
    assert!(
        matches!(&error, ConfigError::TooLarge { largest, .. } if *largest == allowed.to_string()),
        "{message}"
    );
    // At the first rule past the budget: the rules before it fit, and no more.
    let kept_each = 2 * (2 * 64 * 1024 + 2) + 2 * 4 + 1;
    let first_past = allowed / kept_each;
    assert!(
        message.starts_with(&format!(
            "q.yaml:{}:9: descriptors[0].descriptors[{first_past}]: ",
            6 + 2 * first_past
        )),
        "{message}"
    );
    assert!(message.contains("bytes of key paths"), "{message}");
}

#[test]
fn a_file_that_is_not_utf8_is_refused_at_its_first_bad_byte() {
    let mut file = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
    file.write_all(b"domain: d\ndescriptors:\n  - key: k\n    value: \xc3\xa9t\xe9\n")
        .unwrap();
    let name = file.path().display().to_string();
    let err = QuotaSet::load(file.path(), &LoadOptions::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("{name}:4:14: descriptors[0].value: not UTF-8 (quota files are UTF-8 text)")
    );
}

#[test]
fn the_docs_give_the_bounds_the_code_has() {
    let docs = std::fs::read_to_string("../docs/quota-files.md").expect("docs");
    let thousands = |n: usize| {
        let digits = n.to_string();
        let head = digits.len() % 3;
        let mut out = digits[..head].to_owned();
        for (i, chunk) in digits.as_bytes()[head..].chunks(3).enumerate() {
            if i > 0 || head > 0 {
                out.push(' ');
            }
            out.push_str(std::str::from_utf8(chunk).unwrap());
        }
        out
    };
    let nesting = 2 * DEFAULT_MAX_DEPTH + 1 + METADATA_NESTING;
    for row in [
        format!("| `max_depth` | {DEFAULT_MAX_DEPTH} |"),
        format!("| (follows `max_depth`) | {nesting} |"),
        format!("`metadata` up to {METADATA_NESTING} levels"),
        format!("| `max_nodes` | {} |", thousands(DEFAULT_MAX_NODES)),
        format!("nested up to {DEFAULT_MAX_DEPTH} levels deep by default"),
        format!("| (paths) | {PATH_BYTES_PER_BYTE} per byte, and 1 MiB |"),
    ] {
        assert!(docs.contains(&row), "docs/quota-files.md lacks {row:?}");
    }
}
