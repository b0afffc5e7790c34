use std::path::PathBuf;

use clap::{CommandFactory, FromArgMatches, Subcommand};

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

/// The command line of a service binary: the global [`ConfigArgs`] and one of the binary's
/// subcommands `C`. Parse it with [`cli!`](crate::cli!), which names the binary.
#[derive(Debug, clap::Parser)]
#[command(about = None, long_about = None)]
pub struct Cli<C: Subcommand> {
    /// `--config`.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// The subcommand given.
    #[command(subcommand)]
    pub command: C,
}

impl<C: Subcommand> Cli<C> {
    /// Parses the process's arguments as the binary `name` (`--version` prints `name version`,
    /// `--help` starts with `about`). A usage error, `--help` and `--version` print and exit
    /// the process, as clap's `Parser::parse` does.
    pub fn parse_as(name: &'static str, version: &'static str, about: &'static str) -> Self {
        let mut command = Self::command_as(name, version, about);
        let mut matches = command.get_matches_mut();
        Self::from_arg_matches_mut(&mut matches)
            .map_err(|e| e.format(&mut command))
            .unwrap_or_else(|e| e.exit())
    }

    fn command_as(name: &'static str, version: &'static str, about: &'static str) -> clap::Command {
        Self::command().name(name).version(version).about(about)
    }

    /// The subcommand given, and the settings loaded from `--config` and the environment.
    pub fn load(self) -> Result<(C, Settings)> {
        Ok((self.command, self.config.load()?))
    }
}

/// Parses the process's arguments into a [`Cli`] with the subcommands `$command`, as the
/// calling binary: its package's name, version and description are what `--version` and
/// `--help` show (as `#[command(version, about)]` would).
///
/// ```no_run
/// #[derive(clap::Subcommand)]
/// enum Command {
///     /// Validate the configuration and print it.
///     CheckConfig,
/// }
///
/// let (command, settings) = settings::cli!(Command).load().unwrap();
/// match command {
///     Command::CheckConfig => println!("{settings:#?}"),
/// }
/// ```
#[macro_export]
macro_rules! cli {
    ($command:ty) => {
        $crate::Cli::<$command>::parse_as(
            ::core::env!("CARGO_PKG_NAME"),
            ::core::env!("CARGO_PKG_VERSION"),
            ::core::env!("CARGO_PKG_DESCRIPTION"),
        )
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Subcommand)]
    enum Command {
        /// Check it.
        Check,
    }

    #[test]
    fn the_binary_names_itself_and_takes_config_and_its_subcommands() {
        let mut command = Cli::<Command>::command_as("svc", "1.2.3", "A service.");
        assert_eq!(command.render_version(), "svc 1.2.3\n");
        let help = command.render_help().to_string();
        assert!(
            help.starts_with("A service.\n\nUsage: svc [OPTIONS] <COMMAND>\n"),
            "{help}"
        );
        let matches = command
            .try_get_matches_from(["svc", "check", "--config", "x.toml"])
            .unwrap();
        let cli = Cli::<Command>::from_arg_matches(&matches).unwrap();
        assert_eq!(cli.command, Command::Check);
        assert_eq!(cli.config.config, Some(PathBuf::from("x.toml")));
    }
}
