//! `loadtest`: the load harness for Envoy rate limit services.
//!
//! Placeholder: the harness itself is built in its own issue. It exists now so that the
//! workspace layout is final.

fn main() {
    eprintln!("loadtest: not implemented yet; see the README's map of the workspace");
    std::process::exit(2);
}
