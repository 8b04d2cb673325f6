// An unchanged permissionless client, as its own examples use it: `toSimpleSmartAccount` +
// `createSmartAccountClient` with no fee hook and no gas overrides (fees from viem's default estimate on the
// node, gas from the relayer's `eth_estimateUserOperationGas`), sending ops one after another from each of
// several accounts. The accounts hold ETH, not EntryPoint deposits: once the refund of earlier ops no longer
// covers an op's prefund, the account pays the rest during validation — the path a standard client takes
// every few ops. Every op must be mined and its receipt found. Driven by crates/relayer/tests/viem.rs
// (ACCOUNTS accounts, OPS ops each).
import assert from 'node:assert/strict';
import {
  createPublicClient, createWalletClient, decodeEventLog, http, parseAbiItem, parseEther,
} from 'viem';
import { entryPoint08Address } from 'viem/account-abstraction';
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts';
import { createSmartAccountClient } from 'permissionless';
import { toSimpleSmartAccount } from 'permissionless/accounts';
import { chain, env } from './devnet.mjs';
import { deploySimpleFactory } from './simple-factory.mjs';

const entryPoint = { address: entryPoint08Address, version: '0.8' };
const publicClient = createPublicClient({ chain, transport: http() });
const funder = createWalletClient({ chain, transport: http(), account: privateKeyToAccount(env('FUNDER_KEY')) });
await deploySimpleFactory(publicClient, funder);

const deposited = parseAbiItem('event Deposited(address indexed account, uint256 totalDeposit)');
const to = privateKeyToAccount(generatePrivateKey()).address;

/** A SimpleAccount holding 1 ETH (no EntryPoint deposit), behind permissionless's client with its defaults. */
async function simpleAccount() {
  const account = await toSimpleSmartAccount({
    client: publicClient, owner: privateKeyToAccount(generatePrivateKey()), entryPoint,
  });
  const hash = await funder.sendTransaction({ to: account.address, value: parseEther('1') });
  await publicClient.waitForTransactionReceipt({ hash });
  const client = createSmartAccountClient({
    account, chain, client: publicClient, bundlerTransport: http(env('BUNDLER_URL')),
  });
  return { account, client };
}

/** `ops` ops in sequence, each sent when the previous one's receipt came back; counts those the account paid for in validation. */
async function sequence({ account, client }, ops) {
  const hashes = [];
  let paidInValidation = 0;
  for (let i = 0; i < ops; i += 1) {
    const hash = await client.sendUserOperation({ calls: [{ to, value: 1n }] });
    const receipt = await client.waitForUserOperationReceipt({ hash, timeout: 60_000 });
    assert.equal(receipt.success, true, `op ${i} of ${account.address} (${hash})`);
    // The account topped up its deposit while validating: the EntryPoint logged a Deposited for it.
    const topUp = receipt.receipt.logs.some((log) => {
      if (log.address.toLowerCase() !== entryPoint08Address.toLowerCase()) return false;
      try {
        const ev = decodeEventLog({ abi: [deposited], data: log.data, topics: log.topics });
        return ev.args.account.toLowerCase() === account.address.toLowerCase();
      } catch {
        return false;
      }
    });
    if (topUp) paidInValidation += 1;
    hashes.push(hash);
  }
  return { account: account.address, hashes, paidInValidation };
}

const accounts = [];
for (let i = 0; i < Number(env('ACCOUNTS')); i += 1) accounts.push(await simpleAccount()); // one funder: one at a time
const runs = await Promise.all(accounts.map((a) => sequence(a, Number(env('OPS')))));
const total = Number(env('ACCOUNTS')) * Number(env('OPS'));
assert.equal(await publicClient.getBalance({ address: to }), BigInt(total), 'every transfer landed once');
console.log(JSON.stringify({ runs }));
