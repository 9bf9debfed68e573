//! [`Nodes`]: the YAML nodes of a text in document order, each with where it starts and its
//! key path (`descriptors[0].rate_limit.unit`). Errors are explained by replaying a file
//! this way up to the fault, so the success path pays nothing for it.

use serde_saphyr::granit_parser::{Event, Options, Parser, ScalarStyle, StrInput};

/// The path printed for the document itself.
pub(crate) const ROOT: &str = "(root)";

/// A YAML node met while replaying the events.
#[derive(Debug)]
pub(crate) struct Node {
    /// Key path, `descriptors[0].rate_limit.unit`; empty for the document root.
    pub path: String,
    /// Whether the node is a map key (else a value or list item).
    pub is_key: bool,
    pub kind: Kind,
}

#[derive(Debug)]
pub(crate) enum Kind {
    Scalar { text: String, plain: bool },
    Map,
    List,
    Alias,
}

impl Node {
    /// The key path, `(root)` for the document.
    pub fn display_path(&self) -> String {
        if self.path.is_empty() {
            ROOT.to_owned()
        } else {
            self.path.clone()
        }
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

/// The nodes of a text, each with its start (1-based line and column); ends at the first
/// syntax error, so the last node given is the one before the fault.
pub(crate) struct Nodes<'t> {
    parser: Parser<'t, StrInput<'t>>,
    stack: Vec<Frame>,
}

impl<'t> Nodes<'t> {
    /// Replays `text`, allowing collections nested `nesting` deep (as deep as the parse
    /// that failed allowed, so the replay reaches its fault).
    pub fn new(text: &'t str, nesting: usize) -> Self {
        let mut options = Options::default();
        options.block_nesting_limit = options.block_nesting_limit.max(nesting + 1);
        Nodes {
            parser: Parser::new_from_str_with_options(text, options),
            stack: Vec::new(),
        }
    }

    /// The path of the next node, and whether it is a map key.
    fn place(&mut self, kind: &Kind) -> (String, bool) {
        match self.stack.last_mut() {
            None => (String::new(), false),
            Some(Frame::Map { path, key }) => match key.take() {
                Some(k) => (join(path, &k), false),
                None => {
                    let k = match kind {
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
        }
    }
}

impl Iterator for Nodes<'_> {
    type Item = ((u64, u64), Node);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let Ok((event, span)) = self.parser.next()? else {
                return None;
            };
            let start = (span.start.line() as u64, span.start.col() as u64 + 1);
            let kind = match event {
                Event::DocumentStart(..) => {
                    self.stack.clear();
                    continue;
                }
                Event::MappingEnd | Event::SequenceEnd => {
                    self.stack.pop();
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
            let (path, is_key) = self.place(&kind);
            match kind {
                Kind::Map => self.stack.push(Frame::Map {
                    path: path.clone(),
                    key: None,
                }),
                Kind::List => self.stack.push(Frame::List {
                    path: path.clone(),
                    next: 0,
                }),
                _ => {}
            }
            return Some((start, Node { path, is_key, kind }));
        }
    }
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// How deep a domain descriptor at `path` is (1 for `descriptors[0]`, 2 for
/// `descriptors[0].descriptors[3]`); `None` for any other path.
pub(crate) fn descriptor_level(path: &str) -> Option<usize> {
    let mut level = 0;
    for segment in path.split('.') {
        let index = segment.strip_prefix("descriptors[")?.strip_suffix(']')?;
        if index.is_empty() || !index.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        level += 1;
    }
    Some(level)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_come_with_their_start_and_key_path() {
        let text = "domain: d\ndescriptors:\n  - key: k\n";
        let nodes: Vec<((u64, u64), String)> = Nodes::new(text, 0)
            .map(|(start, node)| (start, node.path))
            .collect();
        assert_eq!(
            nodes,
            [
                ((1, 1), String::new()),
                ((1, 1), "domain".to_owned()),
                ((1, 9), "domain".to_owned()),
                ((2, 1), "descriptors".to_owned()),
                ((3, 3), "descriptors".to_owned()),
                ((3, 5), "descriptors[0]".to_owned()),
                ((3, 5), "descriptors[0].key".to_owned()),
                ((3, 10), "descriptors[0].key".to_owned()),
            ]
        );
    }

    #[test]
    fn descriptor_levels_count_only_the_descriptor_chain() {
        assert_eq!(descriptor_level("descriptors[0]"), Some(1));
        assert_eq!(
            descriptor_level("descriptors[0].descriptors[12].descriptors[1]"),
            Some(3)
        );
        for other in [
            "",
            "domain",
            "descriptors",
            "descriptors[0].key",
            "local.descriptors[0]",
            "descriptors[0].metadata.descriptors[0]",
            "descriptors[x]",
        ] {
            assert_eq!(descriptor_level(other), None, "{other}");
        }
    }
}
