//! `SentinelArgs`: the settings of a Redis found through Sentinel (`--redis-sentinel`,
//! `--redis-sentinel-master`, `--redis-sentinel-master-auth`).

use clap::Args;

use crate::error::SettingsError;
use crate::store::redis::{Sentinel, redis_url};

/// A primary found and followed through Redis Sentinel.
#[derive(Debug, Clone, Default, Args)]
pub struct SentinelArgs {
    /// Redis Sentinel nodes, `host:port,host:port,...` (or `redis://[user:password@]host:port`
    /// URLs, with the sentinels' own credentials; `rediss://` for TLS to sentinels and
    /// primary): the primary they name is used, and followed when they fail over.
    #[arg(
        long,
        env = "RLS_REDIS_SENTINEL",
        value_delimiter = ',',
        value_name = "NODES",
        requires = "redis_sentinel_master"
    )]
    pub redis_sentinel: Vec<String>,

    /// The name the sentinels monitor the primary by (`sentinel monitor NAME ...`).
    #[arg(long, env = "RLS_REDIS_SENTINEL_MASTER", value_name = "NAME")]
    pub redis_sentinel_master: Option<String>,

    /// The primary's credentials: a password, or `user:password`.
    #[arg(long, env = "RLS_REDIS_SENTINEL_MASTER_AUTH", value_name = "AUTH")]
    pub redis_sentinel_master_auth: Option<String>,
}

impl SentinelArgs {
    /// The sentinel endpoint, when sentinels are given.
    pub fn sentinel(&self) -> Result<Option<Sentinel>, SettingsError> {
        if self.redis_sentinel.is_empty() {
            return match self.redis_sentinel_master {
                Some(_) => Err(SettingsError::Conflict {
                    setting: "--redis-sentinel-master",
                    reason: "needs --redis-sentinel NODES",
                }),
                None => Ok(None),
            };
        }
        let master = self
            .redis_sentinel_master
            .clone()
            .ok_or(SettingsError::Conflict {
                setting: "--redis-sentinel",
                reason: "needs --redis-sentinel-master NAME",
            })?;
        Ok(Some(Sentinel {
            nodes: self
                .redis_sentinel
                .iter()
                .map(|node| redis_url(node, None))
                .collect(),
            master,
            auth: self.redis_sentinel_master_auth.clone(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentinels_without_a_scheme_become_redis_urls_and_need_a_master_name() {
        let args = SentinelArgs {
            redis_sentinel: vec!["a:26379".into(), "rediss://b:26380".into()],
            redis_sentinel_master: Some("mymaster".into()),
            redis_sentinel_master_auth: Some("secret".into()),
        };
        let sentinel = args.sentinel().expect("valid").expect("a sentinel");
        assert_eq!(sentinel.nodes, ["redis://a:26379", "rediss://b:26380"]);
        assert_eq!(sentinel.master, "mymaster");
        let nameless = SentinelArgs {
            redis_sentinel_master: None,
            ..args.clone()
        };
        assert!(nameless.sentinel().is_err());
        let alone = SentinelArgs {
            redis_sentinel: vec![],
            ..args
        };
        assert!(alone.sentinel().is_err());
        assert_eq!(SentinelArgs::default().sentinel().expect("valid"), None);
    }
}
