//! `convert`: serde-saphyr errors into [`ConfigError`]s with a key path. serde-saphyr gives
//! a line and column only, so on error the text is replayed as parser events up to there,
//! tracking each node's path (no cost on the success path).

use serde_saphyr::granit_parser::{Event, Parser, ScalarStyle};
use serde_saphyr::{DefaultMessageFormatter, Error, MessageFormatter};

use crate::error::{ConfigError, Position};

/// The path printed for the document itself.
const ROOT: &str = "(root)";

/// Converts `err`, raised while deserializing `text` (named `file`).
pub(crate) fn convert(file: &str, text: &str, err: &Error) -> ConfigError {
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
    let found = locate(text, (line, column));
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

/// A YAML node met while replaying the events.
#[derive(Debug)]
struct Node {
    /// Key path, `descriptors[0].rate_limit.unit`; empty for the document root.
    path: String,
    /// Whether the node is a map key (else a value or list item).
    is_key: bool,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Scalar { text: String, plain: bool },
    Map,
    List,
    Alias,
}

impl Node {
    fn display_path(&self) -> String {
        if self.path.is_empty() {
            ROOT.to_owned()
        } else {
            self.path.clone()
        }
    }

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
struct Located {
    /// Nodes starting exactly there, outermost first (a block map starts where its first
    /// key does).
    at: Vec<Node>,
    /// The last node starting before it.
    before: Option<Node>,
}

impl Located {
    /// The node an error about a key means: the key starting there.
    fn key(&self) -> Option<&Node> {
        self.at
            .iter()
            .find(|n| n.is_key)
            .or(self.at.first())
            .or(self.before.as_ref())
    }

    /// The node an error about a value means: the outermost node starting there.
    fn value(&self) -> Option<&Node> {
        self.at.first().or(self.before.as_ref())
    }
}

/// Open collections while replaying.
enum Frame {
    /// `key` is the key whose value comes next, `None` while a key is expected.
    Map {
        path: String,
        key: Option<String>,
    },
    List {
        path: String,
        next: usize,
    },
}

/// Replays the parser's events up to `target` (1-based line, column) and returns the nodes
/// there. Stops early at a syntax error, so the last node read is the one before the fault.
fn locate(text: &str, target: (u64, u64)) -> Located {
    let mut stack: Vec<Frame> = Vec::new();
    let mut found = Located::default();
    for item in Parser::new_from_str(text) {
        let Ok((event, span)) = item else { break };
        let start = (span.start.line() as u64, span.start.col() as u64 + 1);
        if start > target {
            break;
        }
        let kind = match event {
            Event::DocumentStart(..) => {
                stack.clear();
                continue;
            }
            Event::MappingEnd | Event::SequenceEnd => {
                stack.pop();
                continue;
            }
            Event::Scalar(text, style, ..) => Kind::Scalar {
                text: text.into_owned(),
                plain: style == ScalarStyle::Plain,
            },
            Event::MappingStart(..) => Kind::Map,
            Event::SequenceStart(..) => Kind::List,
            Event::Alias(..) => Kind::Alias,
            _ => continue,
        };
        let (path, is_key) = match stack.last_mut() {
            None => (String::new(), false),
            Some(Frame::Map { path, key }) => match key.take() {
                Some(k) => (join(path, &k), false),
                None => {
                    let k = match &kind {
                        Kind::Scalar { text, .. } => text.clone(),
                        _ => "?".to_owned(),
                    };
                    let p = join(path, &k);
                    *key = Some(k);
                    (p, true)
                }
            },
            Some(Frame::List { path, next }) => {
                let p = format!("{path}[{next}]");
                *next += 1;
                (p, false)
            }
        };
        match kind {
            Kind::Map => stack.push(Frame::Map {
                path: path.clone(),
                key: None,
            }),
            Kind::List => stack.push(Frame::List {
                path: path.clone(),
                next: 0,
            }),
            _ => {}
        }
        let node = Node { path, is_key, kind };
        if start == target {
            found.at.push(node);
        } else {
            found.before = Some(node);
        }
    }
    found
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locate_names_the_key_and_the_value_at_a_position() {
        let text = "domain: d\ndescriptors:\n  - key: k\n    rate_limit:\n      unit: day\n";
        let found = locate(text, (5, 7));
        assert_eq!(found.key().unwrap().path, "descriptors[0].rate_limit.unit");
        let found = locate(text, (5, 13));
        assert_eq!(
            found.value().unwrap().path,
            "descriptors[0].rate_limit.unit"
        );
        let found = locate(text, (3, 5));
        assert_eq!(found.value().unwrap().path, "descriptors[0]");
        assert_eq!(found.key().unwrap().path, "descriptors[0].key");
    }

    #[test]
    fn locate_restarts_paths_at_each_document() {
        let text = "domain: a\n---\ndomain: b\ndescriptors:\n  - key: k\n";
        let found = locate(text, (5, 12));
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
