//! `loadtest http`: the open and closed loops, latency and report of `run`, through an HTTP
//! proxy (Envoy with its rate limit filters, RLS or RLQS) instead of a rate limit service:
//! 2xx counts as allowed, 429 as limited, and `--quota` states what each key may get, for
//! the accuracy report. The requests are `GET`s ([`client`]).

pub mod client;

use std::sync::Arc;

use clap::Args;
use config::{LoadOptions, QuotaSet, Unit};
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::accuracy::{RunWindow, evaluate};
use crate::error::HarnessError;
use crate::generator::{self, drive_with};
use crate::progress::{Live, ProgressDisplay};
use crate::provenance::Provenance;
use crate::report::{CodeCount, Measured, RunReport, error_summary, render_text};
use crate::run::RunOutput;
use crate::spec::{Distribution, PhaseSpec};
use crate::workload::{Template, Workload};

use self::client::{HttpCaller, Target, label};

/// The domain of the quota `--quota` states.
const STATED: &str = "http";

/// Arguments of `loadtest http`.
#[derive(Debug, Args)]
pub struct HttpArgs {
    /// The URL to load: http://HOST:PORT/PATH.
    #[arg(long, value_name = "URL")]
    pub target: String,
    /// A header of every request, `name: value`; `{key}` in the value is replaced by the
    /// request's key number (see --keys). Repeat for several headers.
    #[arg(long = "header", value_name = "K:V")]
    pub headers: Vec<String>,
    /// Draw keys from a Zipf distribution: a few hot keys, a long tail (the same as
    /// --distribution zipf).
    #[arg(long)]
    pub zipf: bool,
    /// HTTP/2 with prior knowledge (h2c) instead of HTTP/1.1. HTTP/1.1 opens one connection
    /// per worker (--concurrency); HTTP/2 spreads the workers over --connections.
    #[arg(long)]
    pub http2: bool,
    /// The quota each key is stated to have, `N/UNIT` (UNIT: second, minute, hour or day,
    /// or s, m, h, d): the accuracy report compares what each key was allowed with it.
    #[arg(long, value_name = "N/UNIT")]
    pub quota: Option<String>,
    /// The stated quota's burst (default: N).
    #[arg(long, requires = "quota")]
    pub burst: Option<u32>,
    /// Print the results as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// The pacing, and the keys.
    #[command(flatten)]
    pub phase: PhaseSpec,
}

/// `name: value` as a header, its value possibly holding `{key}`.
fn parse_header(text: &str) -> Result<(String, String), HarnessError> {
    let invalid = |why: &str| HarnessError::Workload(format!("--header {text:?}: {why}"));
    let (name, value) = text
        .split_once(':')
        .ok_or_else(|| invalid("write name: value"))?;
    let name =
        HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| invalid("not a header name"))?;
    Ok((name.as_str().to_string(), value.trim().to_string()))
}

/// The headers of key number `key`.
fn headers_of(template: &Template, key: u32) -> Result<HeaderMap, HarnessError> {
    let mut map = HeaderMap::new();
    for (name, value) in template.instantiate(key) {
        let value = HeaderValue::from_str(&value).map_err(|_| {
            HarnessError::Workload(format!("--header {name}: {value:?} is not a header value"))
        })?;
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| HarnessError::Workload(format!("--header {name:?}")))?;
        map.append(name, value);
    }
    Ok(map)
}

/// `N/UNIT` with its burst, as a quota file of one rule per distinct `entries` (their keys,
/// nested, each with every value its own bucket).
pub fn stated_quota(
    text: &str,
    burst: Option<u32>,
    keys: &[String],
) -> Result<QuotaSet, HarnessError> {
    let invalid =
        || HarnessError::Workload(format!("--quota {text:?}: write N/UNIT, e.g. 20/second"));
    let (count, unit) = text.split_once('/').ok_or_else(invalid)?;
    let count: u32 = count.trim().parse().map_err(|_| invalid())?;
    let unit = match unit.trim() {
        "s" | "sec" => Unit::Second,
        "m" | "min" => Unit::Minute,
        "h" => Unit::Hour,
        "d" => Unit::Day,
        other => Unit::from_name(other).ok_or_else(invalid)?,
    };
    let mut yaml = format!("domain: {STATED}\ndescriptors:\n");
    for (depth, key) in keys.iter().enumerate() {
        let indent = "  ".repeat(2 * depth + 1);
        // JSON strings are YAML strings: any header name reads back as it is.
        let quoted = serde_json::to_string(key).unwrap_or_default();
        yaml.push_str(&format!("{indent}- key: {quoted}\n"));
        if depth + 1 < keys.len() {
            yaml.push_str(&format!("{indent}  descriptors:\n"));
        }
    }
    let indent = "  ".repeat(2 * keys.len());
    yaml.push_str(&format!(
        "{indent}rate_limit: {{unit: {}, requests_per_unit: {count}, burst: {}}}\n",
        unit.as_str(),
        burst.unwrap_or(count).max(1)
    ));
    QuotaSet::from_sources([("--quota", yaml.as_str())], &LoadOptions::default())
        .map_err(|e| HarnessError::Workload(format!("--quota {text:?}: {e}")))
}

/// What a run of `args` sends, built and checked before any request.
struct Plan {
    spec: PhaseSpec,
    target: Arc<Target>,
    workload: Arc<Workload>,
    headers: Arc<Vec<HeaderMap>>,
    quotas: Option<QuotaSet>,
}

impl Plan {
    fn of(args: &HttpArgs) -> Result<Plan, HarnessError> {
        let mut spec = args.phase.clone();
        if !spec.domain.is_empty() || !spec.descriptors.is_empty() || spec.hits != 1 {
            return Err(HarnessError::Workload(
                "loadtest http sends --header, not --domain, --descriptor or --hits".into(),
            ));
        }
        if args.zipf {
            spec.distribution = Distribution::Zipf;
        }
        spec.validate()?;
        let target = Arc::new(Target::parse(&args.target, args.http2)?);
        let headers = args
            .headers
            .iter()
            .map(|h| parse_header(h))
            .collect::<Result<Vec<_>, _>>()?;
        // What the accounting counts per: the headers, or the one target without any.
        let account = match headers.is_empty() {
            true => vec![("target".to_string(), args.target.clone())],
            false => headers.clone(),
        };
        let keys: Vec<String> = account.iter().map(|(k, _)| k.clone()).collect();
        let workload = Workload::with_templates(&spec, vec![Template { entries: account }])?;
        let per_key = Template { entries: headers };
        let maps = (0..spec.keys)
            .map(|key| headers_of(&per_key, key))
            .collect::<Result<Vec<_>, _>>()?;
        let quotas = args
            .quota
            .as_ref()
            .map(|quota| stated_quota(quota, args.burst, &keys))
            .transpose()?;
        Ok(Plan {
            spec,
            target,
            workload: Arc::new(workload),
            headers: Arc::new(maps),
            quotas,
        })
    }
}

/// One run of `args` against its target.
pub async fn measure(args: &HttpArgs, progress: bool) -> Result<Measured, HarnessError> {
    let plan = Plan::of(args)?;
    let (spec, workload) = (&plan.spec, &plan.workload);
    let connections = if plan.target.http2 {
        spec.connections
    } else {
        1
    };
    let mut callers = Vec::with_capacity(connections);
    for _ in 0..connections {
        let target = plan.target.clone();
        callers.push(HttpCaller::connect(target, plan.headers.clone(), spec.timeout).await?);
    }
    let live = Arc::new(Live::default());
    let display = ProgressDisplay::start(
        live.clone(),
        &args.target,
        spec.warmup + spec.duration,
        progress,
    );
    let pacing = generator::Plan::of(spec);
    let (tally, timing) = drive_with(&callers, workload.clone(), &pacing, live).await;
    display.finish();

    let window = RunWindow {
        start_unix: timing.start_unix,
        end_unix: timing.start_unix + timing.elapsed.as_secs_f64(),
    };
    let accuracy = plan.quotas.as_ref().map(|quotas| {
        evaluate(
            quotas,
            STATED,
            &workload.keys,
            &tally.asked,
            &tally.allowed,
            &window,
        )
    });
    // The report's workload line names the URL and the headers.
    let shown = PhaseSpec {
        domain: format!("GET {}", args.target),
        descriptors: args.headers.clone(),
        connections: if plan.target.http2 {
            spec.connections
        } else {
            spec.concurrency
        },
        ..spec.clone()
    };
    let targets = std::slice::from_ref(&args.target);
    let mut run = RunReport::new("", targets, &shown, &tally, &timing, accuracy);
    run.codes = tally
        .by_outcome()
        .into_iter()
        .map(|(outcome, count)| CodeCount {
            code: label(outcome),
            count,
        })
        .collect();
    if run.decisions == 0 {
        return Err(HarnessError::NoDecisions {
            answers: run.answers,
            summary: error_summary(&tally),
        });
    }
    Ok(Measured::new(run, None))
}

/// `loadtest http`.
pub async fn execute(args: &HttpArgs) -> Result<(), HarnessError> {
    let quota = args.quota.as_ref().map(|q| format!("{q} per key"));
    let provenance = Provenance::now(std::slice::from_ref(&args.target), quota.as_deref());
    if !args.json {
        println!("{}\n", provenance.lines().join("\n"));
    }
    let measured = measure(args, !args.quiet).await?;
    if args.json {
        let output = RunOutput {
            provenance,
            phases: vec![measured],
        };
        let json = serde_json::to_string_pretty(&output)
            .map_err(|e| HarnessError::Process(format!("cannot encode the results: {e}")))?;
        println!("{json}");
    } else {
        println!("{}", render_text(&measured, quota.as_deref()));
        println!("(2xx: allowed; 429: limited; other status: neither)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_read_as_name_colon_value_with_the_key_number_in_the_value() {
        let (name, value) = parse_header("X-Api-Key: user{key}").expect("valid");
        assert_eq!((name.as_str(), value.as_str()), ("x-api-key", "user{key}"));
        let template = Template {
            entries: vec![(name, value)],
        };
        let map = headers_of(&template, 7).expect("valid");
        assert_eq!(map["x-api-key"], "user7");
        assert!(parse_header("no colon").is_err());
        assert!(parse_header("bad name: x").is_err());
    }

    #[test]
    fn a_stated_quota_is_one_bucket_per_distinct_header_values() {
        let keys = ["x-api-key".to_string(), "x-tenant".to_string()];
        let quotas = stated_quota("20/s", None, &keys).expect("valid");
        let domain = quotas.domain(STATED).expect("the stated domain");
        let rule = domain
            .resolve(&[("x-api-key", "alice"), ("x-tenant", "acme")])
            .expect("every pair of values has the rule");
        assert_eq!(rule.limits[0].requests_per_unit, 20);
        assert_eq!(rule.limits[0].unit, Unit::Second);
        assert_eq!(rule.limits[0].burst, 20);
        let quotas = stated_quota("600/minute", Some(50), &keys[..1]).expect("valid");
        let rule = quotas
            .domain(STATED)
            .expect("domain")
            .resolve(&[("x-api-key", "a")]);
        assert_eq!(rule.expect("rule").limits[0].burst, 50);
        assert!(stated_quota("20", None, &keys).is_err());
        assert!(stated_quota("20/fortnight", None, &keys).is_err());
    }
}
