//! `keyscope apikey` against `keyscope devnet`: a key created (0600), registered by the account's owner
//! (checked by the relayer through the account's ERC-1271), listed with a request it signs, used by
//! `keyscope quote` to sign its requests, then revoked by the owner — after which the same command is
//! refused with the relayer's reason, as is a command signed with a key never registered.

mod common;

use std::process::Command;

use common::DevnetProcess;
use serde_json::Value;

struct Cli<'a> {
    devnet: &'a DevnetProcess,
    owner: String,
}

impl Cli<'_> {
    fn run(&self, args: &[&str]) -> (bool, Value, String) {
        let info = &self.devnet.ready["devnet"];
        let out = Command::new(env!("CARGO_BIN_EXE_keyscope"))
            .env_remove("KEYSCOPE_API_KEY")
            .env("KEYSCOPE_RPC", self.devnet.rpc())
            .env("KEYSCOPE_BUNDLER", info["bundler"].as_str().unwrap())
            .env("KEYSCOPE_DEPLOYMENT", info["deployment"].as_str().unwrap())
            .env("KEYSCOPE_KEY", &self.owner)
            .args(args)
            .arg("--json")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let text = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
        let json = stdout
            .lines()
            .last()
            .and_then(|l| serde_json::from_str(l).ok())
            .unwrap_or(Value::Null);
        (out.status.success(), json, text)
    }

    fn ok(&self, args: &[&str]) -> Value {
        let (ok, json, text) = self.run(args);
        assert!(ok, "keyscope {args:?} failed: {text}");
        json
    }
}

#[test]
fn an_owner_registers_lists_uses_and_revokes_an_api_key() {
    let devnet = DevnetProcess::spawn(42_323);
    let keys = devnet.ready["devnet"]["traderKeys"].as_array().unwrap();
    let cli = Cli {
        devnet: &devnet,
        owner: keys[0].as_str().unwrap().to_string(),
    };
    cli.ok(&["account", "create", "--collateral", "1000"]);
    let dir = std::env::temp_dir().join(format!("keyscope-apikey-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("mm.key");
    let path = file.to_str().unwrap();
    let created = cli.ok(&["apikey", "create", "--out", path]);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let (ok, _, text) = cli.run(&["apikey", "create", "--out", path]);
    assert!(!ok && text.contains("not overwriting"), "{text}");

    // Unregistered: a signed request is refused by the relayer.
    let (ok, _, text) = cli.run(&["--api-key", path, "quote", "book", "--market", "BTC"]);
    assert!(!ok && text.contains("-32631"), "{text}");

    let reg = cli.ok(&[
        "--api-key",
        path,
        "apikey",
        "register",
        "--permission",
        "read-only",
        "--expires-in",
        "1h",
    ]);
    assert_eq!(reg["apiKey"], created["apiKey"]);
    assert_eq!(reg["permission"], "read-only");
    let listed = cli.ok(&["--api-key", path, "apikey", "list"]);
    assert_eq!(listed[0]["status"], "active", "{listed}");
    cli.ok(&["--api-key", path, "quote", "book", "--market", "BTC"]);

    cli.ok(&["--api-key", path, "apikey", "revoke"]);
    let (ok, _, text) = cli.run(&["--api-key", path, "quote", "book", "--market", "BTC"]);
    assert!(
        !ok && text.contains("-32633") && text.contains("revoked"),
        "{text}"
    );
    // Without a key, the book is public as before.
    cli.ok(&["quote", "book", "--market", "BTC"]);
    let _ = std::fs::remove_dir_all(&dir);
}
