//! The options every command takes (`--rpc`, `--key`, `--json`, …): parsed once by clap beside the
//! command and handed to each command's `run`.

use std::path::PathBuf;

use clap::Args;

/// Options every command takes (listed apart from each command's own in its help).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Global options")]
pub(crate) struct Global {
    /// JSON-RPC endpoint of the chain.
    #[arg(
        long,
        global = true,
        env = "KEYSCOPE_RPC",
        default_value = "http://127.0.0.1:8545"
    )]
    pub rpc: String,
    /// Deployment file (written by `keyscope devnet` or script/Deploy.s.sol) [default:
    /// <project>/deployments/<chainId>.json].
    #[arg(long, global = true, env = "KEYSCOPE_DEPLOYMENT")]
    pub deployment: Option<PathBuf>,
    /// Project directory: where deployments/ is read and written, and where a pinned anvil is looked for
    /// (node_modules/@foundry-rs; else anvil on PATH).
    #[arg(long, global = true, env = "KEYSCOPE_PROJECT", default_value = ".")]
    pub project: PathBuf,
    /// ERC-4337 bundler endpoint; without one, ops are sent to handleOps directly (self-bundling).
    #[arg(long, global = true, env = "KEYSCOPE_BUNDLER")]
    pub bundler: Option<String>,
    /// Owner private key (hex). A --keystore typed on the command line wins over KEYSCOPE_KEY.
    #[arg(
        long = "key",
        global = true,
        env = "KEYSCOPE_KEY",
        hide_env_values = true
    )]
    pub owner_key: Option<String>,
    /// Owner keystore file (password from KEYSCOPE_PASSWORD).
    #[arg(long, global = true, env = "KEYSCOPE_KEYSTORE")]
    pub keystore: Option<PathBuf>,
    /// Key of the EOA that sends self-bundled handleOps transactions [default: the owner key].
    #[arg(
        long,
        global = true,
        env = "KEYSCOPE_RELAYER_KEY",
        hide_env_values = true
    )]
    pub relayer_key: Option<String>,
    /// Which of the owner's accounts (CREATE2 salt).
    #[arg(long, global = true, default_value_t = 0)]
    pub salt: u64,
    /// Print results as JSON, for scripts.
    #[arg(long, global = true)]
    pub json: bool,
    /// API key file (`keyscope apikey create`): requests to the relayer are signed with it.
    #[arg(long, global = true, env = "KEYSCOPE_API_KEY")]
    pub api_key: Option<PathBuf>,
}
