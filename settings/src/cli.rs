use std::path::PathBuf;

use crate::{Result, Settings};

/// The `--config` flag every service binary takes (clap); `AGENTOPS_CONFIG` works too.
#[derive(Debug, Clone, clap::Args)]
pub struct ConfigArgs {
    /// TOML config file (optional; defaults are embedded, AGENTOPS__* variables override).
    #[arg(long, global = true, env = "AGENTOPS_CONFIG")]
    pub config: Option<PathBuf>,
}

impl ConfigArgs {
    /// Loads the settings from the file (if given) and the process environment.
    pub fn load(&self) -> Result<Settings> {
        Settings::from_file_and_env(self.config.as_deref())
    }
}
