//! Configuration: TOML text -> raw shape (`raw.rs`) -> validated [`Settings`].
//! Owns parsing, `${ENV}`/`file:` secret expansion, durations, percentages and
//! error reporting with file:line:column. Must not do any network I/O.
//!
//! Entry points: [`load`] (a file), [`parse`] (text + an [`Env`]), [`default_path`].
//! Every problem is collected into [`ConfigErrors`]; nothing stops at the first one.

mod problems;
mod raw;
mod refs;
mod scalars;
mod secret;
mod settings;
mod units;
mod values;
mod walk;

mod identity;
mod policy;
mod routes;
mod server;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use toml::de::DeTable;

pub use problems::{ConfigErrors, Problem};
pub use secret::Secret;
pub use settings::*;
pub use units::{format_duration, parse_duration};

use walk::{Ctx, Table};

/// Where secrets and referenced files come from. [`SystemEnv`] in production; tests pass
/// a [`StaticEnv`] so they never touch the process environment.
pub trait Env {
    /// The value of environment variable `name`, `None` when unset (or not UTF-8).
    fn var(&self, name: &str) -> Option<String>;
    /// The whole content of a file named by a `file:` reference.
    fn read_file(&self, path: &Path) -> std::io::Result<String>;
}

/// The real process environment and file system.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemEnv;

impl Env for SystemEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
    fn read_file(&self, path: &Path) -> std::io::Result<String> {
        std::fs::read_to_string(path)
    }
}

/// A fixed set of variables and files: for tests and built-in configs (demo) that must
/// not depend on the machine they run on.
#[derive(Debug, Clone, Default)]
pub struct StaticEnv {
    vars: BTreeMap<String, String>,
    files: BTreeMap<PathBuf, String>,
}

impl StaticEnv {
    /// An environment with nothing set.
    pub fn new() -> Self {
        Self::default()
    }
    /// Adds a variable (builder style).
    pub fn var(mut self, name: &str, value: &str) -> Self {
        self.vars.insert(name.to_string(), value.to_string());
        self
    }
    /// Adds a readable file (builder style).
    pub fn file(mut self, path: &str, content: &str) -> Self {
        self.files.insert(PathBuf::from(path), content.to_string());
        self
    }
}

impl Env for StaticEnv {
    fn var(&self, name: &str) -> Option<String> {
        self.vars.get(name).cloned()
    }
    fn read_file(&self, path: &Path) -> std::io::Result<String> {
        self.files.get(path).cloned().ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory")
        })
    }
}

/// The config file usher uses when `-c` is not given: `$USHER_CONFIG`, else
/// `config/usher.toml`.
pub fn default_path() -> PathBuf {
    match std::env::var_os("USHER_CONFIG") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from("config/usher.toml"),
    }
}

/// Reads and validates the file at `path` using the process environment. Problems are
/// reported against `path` as given.
pub fn load(path: &Path) -> Result<Settings, ConfigErrors> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors::new(vec![Problem::file(
            &origin,
            format!("cannot read the configuration file: {e}"),
            "check the path (-c FILE or $USHER_CONFIG); start from config/usher.example.toml",
        )])
    })?;
    let mut settings = parse(&text, &origin, &SystemEnv)?;
    settings.source = Some(path.to_path_buf());
    Ok(settings)
}

/// Validates configuration `text`; `origin` names it in messages (a path, or e.g.
/// `<demo>`). References are resolved through `env`. `source` is left `None`.
pub fn parse(text: &str, origin: &str, env: &dyn Env) -> Result<Settings, ConfigErrors> {
    let (doc, syntax) = DeTable::parse_recoverable(text);
    if !syntax.is_empty() {
        // The tree is unreliable after a syntax error; report the syntax only.
        let problems = syntax
            .iter()
            .map(|e| {
                let span = e.span().unwrap_or(0..0);
                Problem::at(
                    origin,
                    text,
                    span,
                    "",
                    format!("TOML syntax: {}", e.message().trim()),
                    "fix the TOML syntax (see https://toml.io)",
                )
            })
            .collect();
        return Err(ConfigErrors::new(problems));
    }
    let mut cx = Ctx::new(text, origin, env);
    let settings = decode(&mut cx, Table::root(doc.get_ref()));
    match settings {
        Some(s) if !cx.has_problems() => Ok(s),
        _ => {
            let mut problems = cx.into_problems();
            if problems.is_empty() {
                problems.push(Problem::file(
                    origin,
                    "the configuration could not be decoded",
                    "this is a bug in usher; please report it with the file",
                ));
            }
            Err(ConfigErrors::new(problems))
        }
    }
}

/// Decodes every section (all of them, even after problems) and then cross-checks them.
fn decode(cx: &mut Ctx, mut root: Table) -> Option<Settings> {
    let server = server::server(cx, &mut root);
    let state = policy::state(cx, &mut root);
    let session = server::session(cx, &mut root, state.as_ref());
    let groups = policy::groups(cx, &mut root);
    let provisioning = policy::provisioning(cx, &mut root);
    let idps = identity::idps(cx, &mut root, groups.as_ref());
    let directory = identity::directory(cx, &mut root, &idps);
    let targets = routes::targets(cx, &mut root);
    let upstreams = routes::upstreams(cx, &mut root, &targets);
    let sync = policy::sync(cx, &mut root);
    let admin = policy::admin(cx, &mut root);
    root.finish(cx);
    Some(Settings {
        source: None,
        server: server?,
        session: session?,
        idps: idps.all?,
        directory: directory?,
        upstreams: upstreams?,
        targets: targets.all?,
        provisioning: provisioning?,
        groups: groups?,
        sync: sync?,
        state: state?,
        admin: admin?,
    })
}
