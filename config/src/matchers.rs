//! The tests a `kind: RateLimit` rule adds to a [`HeaderMatcher`](crate::HeaderMatcher):
//! [`Regex`] (Envoy's `safe_regex`, whole values) and [`VirtualHostMatch`] (the virtual
//! host a request's `:authority` selects among [`VirtualHosts`]).

/// A regular expression that must match a whole value, as Envoy's `safe_regex` (RE2)
/// matches. Compared by its pattern.
#[derive(Clone, Debug)]
pub struct Regex {
    pattern: String,
    anchored: regex::Regex,
}

impl Regex {
    /// Compiles `pattern` (regex syntax, close to RE2's) to match whole values; the error
    /// says why it cannot be.
    pub fn new(pattern: &str) -> Result<Regex, String> {
        let anchored = regex::Regex::new(&format!("^(?:{pattern})$")).map_err(|err| match err {
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
        let authority = authority.to_ascii_lowercase();
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
