//! `convert`: serde-saphyr errors into [`ConfigError`]s with a key path. serde-saphyr gives
//! a line and column only, so on error the text is replayed as parser events up to there
//! ([`Nodes`]), tracking each node's path (no cost on the success path).

use serde_saphyr::{DefaultMessageFormatter, Error, MessageFormatter};

use crate::error::{ConfigError, Position};
use crate::load::LoadOptions;
use crate::yaml_nodes::{Kind, Node, Nodes, ROOT};

/// Converts `err`, raised while deserializing `text` (named `file`) with `options`.
pub(crate) fn convert(file: &str, text: &str, err: &Error, options: &LoadOptions) -> ConfigError {
    let err = innermost(err);
    let (line, column) = err
        .location()
        .map(|l| (l.line(), l.column()))
        .filter(|&(line, _)| line > 0)
        .unwrap_or((1, 1));
    let at = Position {
        file: file.to_owned(),
        line: crate::file::saturate(line),
        column: crate::file::saturate(column),
    };
    if let Error::Budget { breach, .. } = err {
        return crate::budget::refusal(text, breach, at, options);
    }
    let found = locate(text, (line, column), 0);
    match err {
        Error::SerdeUnknownField {
            field, expected, ..
        } => {
            let node = found.key();
            let path = node.map_or_else(|| field.clone(), |n| n.path.clone());
            if node.is_some_and(Node::reads_as_non_string) {
                ConfigError::NonStringKey {
                    at,
                    path,
                    key: field.clone(),
                }
            } else {
                ConfigError::UnknownField {
                    at,
                    path,
                    field: field.clone(),
                    expected: expected.clone(),
                }
            }
        }
        Error::DuplicateMappingKey { key, .. } => ConfigError::DuplicateYamlKey {
            at,
            path: found
                .key()
                .map_or_else(|| ROOT.to_owned(), Node::display_path),
            key: key.clone().unwrap_or_default(),
        },
        _ => match expected_kind(err) {
            Some(expected) => {
                let node = found.value();
                ConfigError::WrongType {
                    at,
                    path: node.map_or_else(|| ROOT.to_owned(), Node::display_path),
                    expected,
                    found: node.map_or_else(|| "nothing".to_owned(), Node::describe),
                }
            }
            None => ConfigError::Syntax {
                at,
                path: found
                    .value()
                    .map_or_else(|| ROOT.to_owned(), Node::display_path),
                message: message(err),
            },
        },
    }
}

/// The error that says what is wrong, without snippet or alias wrappers.
fn innermost(mut err: &Error) -> &Error {
    loop {
        match err {
            Error::WithSnippet { error, .. } | Error::AliasError { error, .. } => err = error,
            _ => return err,
        }
    }
}

/// For a type mismatch, what the format wanted, in words.
fn expected_kind(err: &Error) -> Option<&'static str> {
    match err {
        Error::Unexpected { expected, .. } => match *expected {
            "mapping start" | "empty mapping start" => Some("a map"),
            "sequence start" => Some("a list"),
            "string scalar" | "str expected" | "missing string" => Some("a string"),
            "bool expected" | "missing bool" => Some("true or false"),
            _ => None,
        },
        Error::InvalidScalar { ty, .. } => match *ty {
            "u32" => Some("an integer from 0 to 4294967295"),
            "u16" => Some("an integer from 0 to 65535"),
            "i64" => Some("an integer"),
            "f64" => Some("a number"),
            "bool" => Some("true or false"),
            _ => None,
        },
        Error::InvalidBooleanStrict { .. } => Some("true or false"),
        Error::NullIntoString { .. } => Some("a string"),
        _ => None,
    }
}

/// serde-saphyr's own wording, without its location suffix or control characters.
fn message(err: &Error) -> String {
    DefaultMessageFormatter
        .format_message(err)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

impl Node {
    /// Whether YAML reads this scalar as a number, boolean or null rather than a string.
    fn reads_as_non_string(&self) -> bool {
        let Kind::Scalar { text, plain: true } = &self.kind else {
            return false;
        };
        let lower = text.to_ascii_lowercase();
        let special = matches!(
            lower.as_str(),
            "" | "~"
                | "null"
                | "true"
                | "false"
                | "yes"
                | "no"
                | "on"
                | "off"
                | ".inf"
                | "+.inf"
                | "-.inf"
                | ".nan"
        );
        let radix = |prefix: &str, digit: fn(&char) -> bool| {
            lower
                .strip_prefix(prefix)
                .is_some_and(|d| !d.is_empty() && d.chars().all(|c| digit(&c)))
        };
        special
            || (lower.parse::<f64>().is_ok() && !lower.contains("inf") && !lower.contains("nan"))
            || radix("0x", char::is_ascii_hexdigit)
            || radix("0o", |c| c.is_digit(8))
    }

    /// What was found, for "expected X, found Y".
    fn describe(&self) -> String {
        match &self.kind {
            Kind::Map => "a map".to_owned(),
            Kind::List => "a list".to_owned(),
            Kind::Alias => "an alias".to_owned(),
            Kind::Scalar { text, .. } if self.reads_as_non_string() => {
                if matches!(text.as_str(), "" | "~") {
                    "null".to_owned()
                } else {
                    text.clone()
                }
            }
            Kind::Scalar { text, .. } => format!("{text:?}"),
        }
    }
}

/// The nodes at and just before a position.
#[derive(Debug, Default)]
pub(crate) struct Located {
    /// Nodes starting exactly there, outermost first (a block map starts where its first
    /// key does).
    at: Vec<Node>,
    /// The last node starting before it.
    before: Option<Node>,
}

impl Located {
    /// The node an error about a key means: the key starting there.
    pub fn key(&self) -> Option<&Node> {
        self.at
            .iter()
            .find(|n| n.is_key)
            .or(self.at.first())
            .or(self.before.as_ref())
    }

    /// The node an error about a value means: the outermost node starting there.
    pub fn value(&self) -> Option<&Node> {
        self.at.first().or(self.before.as_ref())
    }
}

/// The nodes at `target` (1-based line, column) of `text`, replayed allowing `nesting`
/// levels. Stops early at a syntax error, so the last node read is the one before the fault.
pub(crate) fn locate(text: &str, target: (u64, u64), nesting: usize) -> Located {
    let mut found = Located::default();
    for (start, node) in Nodes::new(text, nesting) {
        if start > target {
            break;
        }
        if start == target {
            found.at.push(node);
        } else {
            found.before = Some(node);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locate_names_the_key_and_the_value_at_a_position() {
        let text = "domain: d\ndescriptors:\n  - key: k\n    rate_limit:\n      unit: day\n";
        let found = locate(text, (5, 7), 0);
        assert_eq!(found.key().unwrap().path, "descriptors[0].rate_limit.unit");
        let found = locate(text, (5, 13), 0);
        assert_eq!(
            found.value().unwrap().path,
            "descriptors[0].rate_limit.unit"
        );
        let found = locate(text, (3, 5), 0);
        assert_eq!(found.value().unwrap().path, "descriptors[0]");
        assert_eq!(found.key().unwrap().path, "descriptors[0].key");
    }

    #[test]
    fn locate_restarts_paths_at_each_document() {
        let text = "domain: a\n---\ndomain: b\ndescriptors:\n  - key: k\n";
        let found = locate(text, (5, 12), 0);
        assert_eq!(found.value().unwrap().path, "descriptors[0].key");
    }

    #[test]
    fn numbers_booleans_and_null_do_not_read_as_strings() {
        for text in ["0.25", "1", "0x1f", "true", "No", "~", "null", "-.inf"] {
            let node = Node {
                path: String::new(),
                is_key: true,
                kind: Kind::Scalar {
                    text: text.to_owned(),
                    plain: true,
                },
            };
            assert!(node.reads_as_non_string(), "{text}");
        }
        for text in ["domain", "infinity", "nan", "1.2.3"] {
            let node = Node {
                path: String::new(),
                is_key: true,
                kind: Kind::Scalar {
                    text: text.to_owned(),
                    plain: true,
                },
            };
            assert!(!node.reads_as_non_string(), "{text}");
        }
    }
}
