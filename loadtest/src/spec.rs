//! [`PhaseSpec`]: one phase of load — workload and pacing — given by flags or by one entry of
//! a [`Scenario`] file (YAML, several phases).

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, ValueEnum};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::HarnessError;

/// How the key of each request is chosen among `keys`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Distribution {
    /// Every key equally often.
    #[default]
    Uniform,
    /// Key `k` (from 0) with weight `1 / (k + 1)^s`: a few hot keys, a long tail.
    Zipf,
}

/// One phase: what to send, how fast, for how long. The same fields are flags of
/// `loadtest run` and keys of a scenario file's `phases` entries.
#[derive(Clone, Debug, Args, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PhaseSpec {
    /// Name of the phase in reports (scenario files only).
    #[arg(skip)]
    pub name: String,
    /// The rate limit domain of every request.
    #[arg(long, default_value_t, hide_default_value = true)]
    pub domain: String,
    /// One descriptor as key=value pairs, comma-separated (`path=/a,method=GET`); repeat for
    /// several descriptors per request. `{key}` in a value is replaced by the key number.
    #[arg(long = "descriptor", value_name = "K=V,...")]
    pub descriptors: Vec<String>,
    /// Number of distinct keys (values of `{key}`: 0 to keys-1); 1 is one hot key.
    #[arg(long, default_value_t = 1)]
    pub keys: u32,
    /// How each request's key is chosen among the keys.
    #[arg(long, value_enum, default_value_t)]
    pub distribution: Distribution,
    /// Exponent of the Zipf distribution.
    #[arg(long, default_value_t = 1.1)]
    pub zipf_s: f64,
    /// The requests' hits_addend (tokens each descriptor asks for; 0 means 1).
    #[arg(long, default_value_t = 1)]
    pub hits: u32,
    /// Seed of the key sequence, so that runs repeat.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Closed loop: requests in flight at all times. Open loop (`--rate`): the most in flight.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// HTTP/2 connections, spread over the targets; the workers share them.
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// Open loop: requests per second on a fixed schedule (latency counts from each
    /// request's scheduled start). Without it, the loop is closed.
    #[arg(long)]
    pub rate: Option<f64>,
    /// How long to measure, after the warm-up (`30s`, `500ms`).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_secs")]
    pub duration: Duration,
    /// Load sent before measuring; its answers are not counted.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_secs")]
    pub warmup: Duration,
    /// A request not answered in this time counts as DEADLINE_EXCEEDED.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_secs")]
    pub timeout: Duration,
}

impl Default for PhaseSpec {
    fn default() -> Self {
        PhaseSpec {
            name: String::new(),
            domain: String::new(),
            descriptors: Vec::new(),
            keys: 1,
            distribution: Distribution::Uniform,
            zipf_s: 1.1,
            hits: 1,
            seed: 1,
            concurrency: 64,
            connections: 4,
            rate: None,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(2),
            timeout: Duration::from_secs(5),
        }
    }
}

impl PhaseSpec {
    /// One line saying how the load is paced: `closed loop, 64 in flight` or
    /// `open loop at 20000/s, at most 64 in flight`.
    pub fn pace(&self) -> String {
        match self.rate {
            Some(rate) => format!(
                "open loop at {rate}/s, at most {} in flight",
                self.concurrency
            ),
            None => format!("closed loop, {} in flight", self.concurrency),
        }
    }

    /// Checks what can be checked without building the requests.
    pub fn validate(&self) -> Result<(), HarnessError> {
        let fail = |message: &str| Err(HarnessError::Workload(message.to_string()));
        if self.concurrency == 0 {
            return fail("--concurrency must be at least 1");
        }
        if self.connections == 0 {
            return fail("--connections must be at least 1");
        }
        if let Some(rate) = self.rate
            && !(rate.is_finite() && rate > 0.0)
        {
            return fail("--rate must be a positive number of requests per second");
        }
        if self.duration.is_zero() {
            return fail("--duration must be more than 0");
        }
        if self.timeout.is_zero() {
            return fail("--timeout must be more than 0");
        }
        Ok(())
    }
}

/// A scenario file: targets and quota (flags win over them) and phases run in order.
///
/// ```yaml
/// target: [127.0.0.1:8081]
/// quota: config/examples
/// phases:
///   - name: hot key
///     domain: edge
///     descriptors: ["path=/Page.Show"]
///     duration: 10s
///   - name: zipf, open loop
///     domain: edge
///     descriptors: ["remote_address=10.0.{key}"]
///     keys: 100000
///     distribution: zipf
///     rate: 20000
///     concurrency: 512
/// ```
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Services to load (`host:port`); connections are spread over them.
    #[serde(default)]
    pub target: Vec<String>,
    /// Quota file or directory for the accuracy figures, relative to the scenario file.
    #[serde(default)]
    pub quota: Option<PathBuf>,
    /// The phases, run one after the other.
    pub phases: Vec<PhaseSpec>,
}

impl Scenario {
    /// Reads and parses a scenario file; a relative `quota` is taken from the file's folder.
    pub fn load(path: &Path) -> Result<Scenario, HarnessError> {
        let fail = |message: String| HarnessError::Scenario {
            path: path.to_path_buf(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
        let mut scenario = Scenario::parse(&text).map_err(fail)?;
        if let Some(quota) = &scenario.quota
            && quota.is_relative()
        {
            let folder = path.parent().unwrap_or(Path::new("."));
            scenario.quota = Some(folder.join(quota));
        }
        Ok(scenario)
    }

    /// Parses a scenario from YAML text.
    pub fn parse(text: &str) -> Result<Scenario, String> {
        let scenario: Scenario = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
        if scenario.phases.is_empty() {
            return Err("`phases` must list at least one phase".into());
        }
        Ok(scenario)
    }
}

/// Parses `30s`, `500ms`, `1m 30s`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("{e} (try `30s` or `500ms`)"))
}

fn de_duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse_duration(&text).map_err(serde::de::Error::custom)
}

fn ser_secs<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(duration.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scenario_lists_phases_whose_missing_fields_take_the_flag_defaults() {
        let scenario = Scenario::parse(
            "target: [127.0.0.1:8081]\nphases:\n  - name: hot\n    domain: edge\n    descriptors: [\"path=/\"]\n    duration: 1500ms\n  - domain: edge\n    descriptors: [\"user={key}\"]\n    keys: 1000\n    distribution: zipf\n    rate: 500\n",
        )
        .expect("valid scenario");
        assert_eq!(scenario.target, ["127.0.0.1:8081"]);
        let [hot, zipf] = &scenario.phases[..] else {
            panic!("two phases")
        };
        assert_eq!(hot.name, "hot");
        assert_eq!(hot.duration, Duration::from_millis(1500));
        assert_eq!(hot.warmup, Duration::from_secs(2));
        assert_eq!(hot.concurrency, 64);
        assert_eq!(zipf.distribution, Distribution::Zipf);
        assert_eq!(zipf.keys, 1000);
        assert_eq!(zipf.rate, Some(500.0));
    }

    #[test]
    fn a_scenario_with_an_unknown_key_or_no_phase_is_refused() {
        let unknown = Scenario::parse("phases:\n  - domain: edge\n    concurency: 4\n");
        assert!(unknown.unwrap_err().contains("concurency"));
        let empty = Scenario::parse("phases: []\n");
        assert!(empty.unwrap_err().contains("at least one phase"));
    }

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn a_zero_concurrency_or_a_negative_rate_is_refused() {
        let spec = PhaseSpec {
            concurrency: 0,
            ..PhaseSpec::default()
        };
        assert!(spec.validate().is_err());
        let spec = PhaseSpec {
            rate: Some(-1.0),
            ..PhaseSpec::default()
        };
        assert!(spec.validate().is_err());
        assert!(PhaseSpec::default().validate().is_ok());
    }
}
