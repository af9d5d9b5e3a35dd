//! Where configuration comes from: file, environment, `-D` flags.

use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use weir_core::config::{self, ConfigLayer};
use weir_core::{Config, plan::Plan};

/// The configuration sources given on the command line.
#[derive(Debug, Clone)]
pub struct Sources {
    file: Option<PathBuf>,
    defines: Vec<String>,
}

impl Sources {
    pub fn new(file: Option<PathBuf>, defines: Vec<String>) -> Self {
        Sources { file, defines }
    }

    fn file_layer(&self) -> Result<ConfigLayer> {
        let Some(path) = &self.file else {
            return Ok(ConfigLayer::new());
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read configuration file {}", path.display()))?;
        config::parse_yaml(&text).with_context(|| format!("in {}", path.display()))
    }

    /// The `-D` flags as key/value pairs.
    pub fn defines(&self) -> Result<Vec<(String, String)>> {
        Ok(self.flag_layer(&[])?.into_iter().collect())
    }

    /// The configuration file's keys.
    pub fn file_keys(&self) -> Result<ConfigLayer> {
        self.file_layer()
    }

    fn flag_layer(&self, extra: &[(&str, String)]) -> Result<ConfigLayer> {
        let mut l = ConfigLayer::new();
        for d in &self.defines {
            let Some((k, v)) = d.split_once('=') else {
                bail!("-D {d}: expected KEY=VALUE, for example -D parallelism.default=4");
            };
            l.insert(k.trim().to_owned(), v.trim().to_owned());
        }
        for (k, v) in extra {
            l.insert((*k).to_owned(), v.clone());
        }
        Ok(l)
    }

    /// The effective configuration: defaults < file < job plan < environment
    /// < flags.
    pub fn resolve(&self, plan: Option<&Plan>, extra: &[(&str, String)]) -> Result<Config> {
        let file = self.file_layer()?;
        let plan_layer: ConfigLayer = plan
            .map(|p| p.config.iter().cloned().collect())
            .unwrap_or_default();
        let env = config::from_env(std::env::vars());
        let flags = self.flag_layer(extra)?;
        Ok(Config::from_layers(&[&file, &plan_layer, &env, &flags])?)
    }
}
