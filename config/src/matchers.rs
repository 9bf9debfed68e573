//! The tests a `kind: RateLimit` rule adds to a [`HeaderMatcher`](crate::HeaderMatcher):
//! [`Regex`] (Envoy's `safe_regex`, whole values) and [`VirtualHostMatch`] (the virtual
//! host a request's `:authority` selects among [`VirtualHosts`]).

use regex_syntax::ast::{
    self, AssertionKind, Ast, ClassBracketed, ClassPerl, ClassPerlKind, ClassSet, ClassSetItem,
    ClassSetRange, ClassSetUnion, Flag, Flags, FlagsItem, FlagsItemKind, Group, GroupKind,
    HexLiteralKind, Literal, LiteralKind,
};

/// A regular expression that must match a whole value, as Envoy's `safe_regex` (RE2)
/// matches it: `\d`, `\s`, `\w` and `\b` are ASCII, as in RE2. Compared by its pattern.
#[derive(Clone, Debug)]
pub struct Regex {
    pattern: String,
    anchored: regex::Regex,
}

impl Regex {
    /// Compiles `pattern` (regex syntax, close to RE2's) to match whole values; the error
    /// says why it cannot be.
    pub fn new(pattern: &str) -> Result<Regex, String> {
        let re2 = re2_classes(pattern)?;
        let anchored = regex::Regex::new(&format!("^(?:{re2})$")).map_err(|err| match err {
            regex::Error::Syntax(message) => message,
            regex::Error::CompiledTooBig(limit) => {
                format!("it compiles to more than {limit} bytes")
            }
            other => other.to_string(),
        })?;
        Ok(Regex {
            pattern: pattern.to_owned(),
            anchored,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// Whether the whole of `value` matches.
    pub fn is_match(&self, value: &str) -> bool {
        self.anchored.is_match(value)
    }
}

impl PartialEq for Regex {
    fn eq(&self, other: &Regex) -> bool {
        self.pattern == other.pattern
    }
}

impl Eq for Regex {}

/// Which virtual hosts a rule applies to, among every host of a load: a request's
/// `:authority` selects at most one host of the load as Envoy selects a virtual host
/// ([`VirtualHosts::select`]), and the rule applies when that host is one of its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VirtualHostMatch {
    /// Every host of the load.
    pub all: std::sync::Arc<VirtualHosts>,
    /// Indices into `all` of the rule's hosts.
    pub own: Vec<usize>,
}

impl VirtualHostMatch {
    /// Whether `authority` selects one of the rule's hosts.
    pub fn is_match(&self, authority: &str) -> bool {
        self.all
            .select(authority)
            .is_some_and(|host| self.own.contains(&host))
    }
}

/// The virtual hosts of a proxy, each a domain as Envoy writes them: `name` or `name:port`,
/// `*.suffix` or `prefix*` (a `*` for at least one character), or `*` alone. Lowercase.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VirtualHosts {
    hosts: Vec<String>,
}

impl VirtualHosts {
    /// Adds `host` (lowercased) unless it is already there; its index either way.
    pub fn add(&mut self, host: &str) -> usize {
        let host = host.to_ascii_lowercase();
        match self.hosts.iter().position(|h| *h == host) {
            Some(index) => index,
            None => {
                self.hosts.push(host);
                self.hosts.len() - 1
            }
        }
    }

    /// The host at `index` (lowercase), as [`VirtualHosts::add`] returned it.
    pub fn name(&self, index: usize) -> &str {
        &self.hosts[index]
    }

    /// The host `authority` selects, as Envoy picks a virtual host by the `:authority`
    /// (lowercased, port included): the host equal to it, else the longest `*suffix` host
    /// whose suffix ends it, else the longest `prefix*` host whose prefix starts it (a `*`
    /// stands for at least one character), else `*`.
    pub fn select(&self, authority: &str) -> Option<usize> {
        // Checked on every request: no allocation for a host already in lowercase.
        let authority: std::borrow::Cow<'_, str> =
            if authority.bytes().any(|b| b.is_ascii_uppercase()) {
                authority.to_ascii_lowercase().into()
            } else {
                authority.into()
            };
        let best = |wildcard: fn(&str) -> Option<&str>, fits: &dyn Fn(&str) -> bool| {
            (self.hosts.iter().enumerate())
                .filter_map(|(i, h)| wildcard(h).map(|part| (i, part)))
                .filter(|(_, part)| !part.is_empty() && part.len() < authority.len() && fits(part))
                .max_by_key(|(i, part)| (part.len(), std::cmp::Reverse(*i)))
                .map(|(i, _)| i)
        };
        self.hosts
            .iter()
            .position(|h| *h == authority)
            .or_else(|| best(|h| h.strip_prefix('*'), &|s| authority.ends_with(s)))
            .or_else(|| best(|h| h.strip_suffix('*'), &|p| authority.starts_with(p)))
            .or_else(|| self.hosts.iter().position(|h| h == "*"))
    }
}

/// `pattern` with RE2's meaning of `\d`, `\s`, `\w` and `\b`, which are ASCII there and
/// Unicode in the regex crate: each class is written out (`\s` is `[\t\n\f\r ]` in RE2,
/// without the vertical tab), each word boundary made ASCII.
fn re2_classes(pattern: &str) -> Result<String, String> {
    let mut ast = ast::parse::Parser::new()
        .parse(pattern)
        .map_err(|err| err.kind().to_string())?;
    rewrite(&mut ast);
    let mut out = String::with_capacity(pattern.len());
    ast::print::Printer::new()
        .print(&ast, &mut out)
        .map_err(|err| err.to_string())?;
    Ok(out)
}

fn rewrite(node: &mut Ast) {
    match node {
        Ast::ClassPerl(perl) => {
            *node = Ast::class_bracketed(ascii_class(perl));
        }
        Ast::Assertion(assertion)
            if matches!(
                assertion.kind,
                AssertionKind::WordBoundary | AssertionKind::NotWordBoundary
            ) =>
        {
            let span = assertion.span;
            let flag = |kind| FlagsItem { span, kind };
            let inner = std::mem::replace(node, Ast::empty(span));
            *node = Ast::group(Group {
                span,
                kind: GroupKind::NonCapturing(Flags {
                    span,
                    items: vec![
                        flag(FlagsItemKind::Negation),
                        flag(FlagsItemKind::Flag(Flag::Unicode)),
                    ],
                }),
                ast: Box::new(inner),
            });
        }
        Ast::ClassBracketed(class) => rewrite_set(&mut class.kind),
        Ast::Repetition(repetition) => rewrite(&mut repetition.ast),
        Ast::Group(group) => rewrite(&mut group.ast),
        Ast::Alternation(alternation) => alternation.asts.iter_mut().for_each(rewrite),
        Ast::Concat(concat) => concat.asts.iter_mut().for_each(rewrite),
        _ => {}
    }
}

fn rewrite_set(set: &mut ClassSet) {
    match set {
        ClassSet::Item(item) => rewrite_item(item),
        ClassSet::BinaryOp(op) => {
            rewrite_set(&mut op.lhs);
            rewrite_set(&mut op.rhs);
        }
    }
}

fn rewrite_item(item: &mut ClassSetItem) {
    match item {
        ClassSetItem::Perl(perl) => {
            *item = ClassSetItem::Bracketed(Box::new(ascii_class(perl)));
        }
        ClassSetItem::Bracketed(class) => rewrite_set(&mut class.kind),
        ClassSetItem::Union(union) => union.items.iter_mut().for_each(rewrite_item),
        _ => {}
    }
}

/// RE2's `\d` (`[0-9]`), `\s` (`[\t\n\f\r ]`) or `\w` (`[0-9A-Za-z_]`), negated as written.
fn ascii_class(perl: &ClassPerl) -> ClassBracketed {
    let span = perl.span;
    let literal = |c| Literal {
        span,
        kind: LiteralKind::HexFixed(HexLiteralKind::X),
        c,
    };
    let range = |start, end| {
        ClassSetItem::Range(ClassSetRange {
            span,
            start: literal(start),
            end: literal(end),
        })
    };
    let items = match perl.kind {
        ClassPerlKind::Digit => vec![range('0', '9')],
        ClassPerlKind::Space => ['\t', '\n', '\x0C', '\r', ' ']
            .map(|c| ClassSetItem::Literal(literal(c)))
            .to_vec(),
        ClassPerlKind::Word => vec![
            range('0', '9'),
            range('A', 'Z'),
            range('a', 'z'),
            ClassSetItem::Literal(literal('_')),
        ],
    };
    ClassBracketed {
        span,
        negated: perl.negated,
        kind: ClassSet::union(ClassSetUnion { span, items }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perl_classes_and_word_boundaries_are_ascii_as_in_re2() {
        let regex = |p: &str| Regex::new(p).unwrap();
        assert!(regex(r"\d+").is_match("042") && !regex(r"\d").is_match("٣"));
        assert!(regex(r"\w+").is_match("a_Z9") && !regex(r"\w").is_match("é"));
        assert!(regex(r"\W").is_match("é") && regex(r"[^\D]").is_match("7"));
        assert!(regex(r"\s").is_match("\x0C") && !regex(r"\s").is_match("\x0B"));
        assert!(regex(r"[\s\d]+").is_match(" 1\t2") && !regex(r"\s").is_match("\u{a0}"));
        assert!(regex(r".*\bx\b.*").is_match("a x b") && regex(r"éx\b").is_match("éx"));
        assert!(regex(r"(?x) \d \s").is_match("1 ") && regex(r"\pL+").is_match("éa"));
        assert_eq!(regex(r"a\d").as_str(), r"a\d");
    }
}
