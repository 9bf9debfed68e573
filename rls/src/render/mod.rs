//! `rls render`: the proxy half of `kind: RateLimit` resources — an Envoy bootstrap or the
//! pieces to paste into one ([`envoy`]), or Istio EnvoyFilters ([`istio`]) — from the same
//! quota files `rls serve` loads, so that the descriptors Envoy sends are those `rls`
//! limits. Output is deterministic: the same files give the same bytes.
//!
//! Modules: `args` ([`RenderArgs`]), `input` ([`Input`]: the resources, and a note per file
//! that has none), `actions` (each descriptor entry's Envoy action, the per-host filter
//! configs), `envoy`, `istio`, `yaml` (ordered YAML output).

mod actions;
mod args;
mod envoy;
mod input;
mod istio;
mod yaml;

pub use args::{EnvoyArgs, IstioArgs, RenderArgs, RenderTarget};
pub use input::Input;

/// What `rls render` prints: the YAML on stdout, the notes on stderr.
#[derive(Debug)]
pub struct Rendered {
    /// The configuration.
    pub yaml: String,
    /// What could not be rendered, or applies with a caveat, one sentence each.
    pub notes: Vec<String>,
}

/// Loads the quota files of `args` and renders them.
pub fn run(args: &RenderArgs) -> anyhow::Result<Rendered> {
    match &args.target {
        RenderTarget::Envoy(envoy) => {
            let input = Input::load(&envoy.quotas)?;
            envoy::render(&input, envoy)
        }
        RenderTarget::Istio(istio) => {
            let input = Input::load(&istio.quotas)?;
            istio::render(&input, istio)
        }
    }
}
