#!/usr/bin/env node
// solc for forge, from the official compiler built to wasm (npm `solc`).
//
// Forge needs a native `solc` binary and downloads one when it has none; this
// machine has no network but package registries, so forge is pointed here
// (foundry.toml: `solc = "tools/solc.mjs"`). Forge only ever asks two things:
//   solc --version            -> "Version: <x.y.z+commit...>"
//   solc --standard-json      -> compile the JSON input on stdin, JSON on stdout
// Import callbacks are not needed: forge passes every source in the input.
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const solc = require("solc");
const args = process.argv.slice(2);

if (args.includes("--version")) {
  process.stdout.write(`solc, the solidity compiler commandline interface\nVersion: ${solc.version()}\n`);
} else if (args.includes("--standard-json")) {
  const chunks = [];
  process.stdin.on("data", (chunk) => chunks.push(chunk));
  process.stdin.on("end", () => {
    // Never process.exit() after this write: output over 64 KiB on a pipe
    // would be cut off. Returning lets node flush stdout and exit by itself.
    process.stdout.write(solc.compile(Buffer.concat(chunks).toString("utf8")));
  });
} else {
  process.stderr.write(`tools/solc.mjs: only --version and --standard-json are supported (got: ${args.join(" ")})\n`);
  process.exitCode = 2;
}
