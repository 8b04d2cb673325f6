// A third-party smart account, unchanged: permissionless's `toSimpleSmartAccount` (eth-infinitism's
// SimpleAccount v0.8 from its canonical factory) with `createSmartAccountClient`, fees from
// `pimlico_getUserOperationGasPrice` as permissionless documents it, nothing Keyscope-specific.
// Driven by crates/relayer/tests/viem.rs. PHASE=clients: deploy, estimate, send, receipt, then a burst of
// 40 ops over 10 accounts (4 each: ERC-7562's limit for an unstaked sender's pooled ops). PHASE=squat: one
// account signs its ops on the nonce key a Keyscope trader's session key uses (SQUAT_KEY), as an attacker
// exhausting that key's quota would.
import assert from 'node:assert/strict';
import { createPublicClient, createWalletClient, http, parseEther } from 'viem';
import { entryPoint08Address } from 'viem/account-abstraction';
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts';
import { createSmartAccountClient } from 'permissionless';
import { toSimpleSmartAccount } from 'permissionless/accounts';
import { createPimlicoClient } from 'permissionless/clients/pimlico';
import { chain, env } from './devnet.mjs';
import { deploySimpleFactory } from './simple-factory.mjs';

const entryPoint = { address: entryPoint08Address, version: '0.8' };
assert.equal(entryPoint08Address.toLowerCase(), env('ENTRY_POINT').toLowerCase());
const publicClient = createPublicClient({ chain, transport: http() });
const funder = createWalletClient({ chain, transport: http(), account: privateKeyToAccount(env('FUNDER_KEY')) });
const pimlico = createPimlicoClient({ chain, transport: http(env('BUNDLER_URL')), entryPoint });

await deploySimpleFactory(publicClient, funder);

/** A funded SimpleAccount behind permissionless's client, with the documented fee source. */
async function simpleAccount(nonceKey) {
  const account = await toSimpleSmartAccount({
    client: publicClient,
    owner: privateKeyToAccount(generatePrivateKey()),
    entryPoint,
    ...(nonceKey === undefined ? {} : { nonceKey }),
  });
  const hash = await funder.sendTransaction({ to: account.address, value: parseEther('1') });
  await publicClient.waitForTransactionReceipt({ hash });
  const client = createSmartAccountClient({
    account,
    chain,
    bundlerTransport: http(env('BUNDLER_URL')),
    userOperation: { estimateFeesPerGas: async () => (await pimlico.getUserOperationGasPrice()).fast },
  });
  return { account, client };
}

const to = privateKeyToAccount(generatePrivateKey()).address;
const out = {};
if (env('PHASE') === 'clients') {
  const accounts = [];
  for (let i = 0; i < 10; i += 1) accounts.push(await simpleAccount()); // one funder: one at a time
  // Estimate: the first op carries the factory, its gas comes from the relayer.
  const gas = await accounts[0].client.estimateUserOperationGas({ calls: [{ to, value: 1n }] });
  for (const field of ['preVerificationGas', 'verificationGasLimit', 'callGasLimit']) {
    assert.ok(gas[field] > 0n, `${field} estimated: ${gas[field]}`);
  }
  // Deploy every account with its first op; `sendTransaction` waits for the receipt through the relayer.
  const deployed = await Promise.all(accounts.map(({ client }) => client.sendTransaction({ to, value: 1n })));
  for (const { account } of accounts) {
    assert.ok(await publicClient.getCode({ address: account.address }), `${account.address} deployed`);
  }
  // A burst: 4 ops from each of the 10 accounts at once (as many as ERC-7562 pools for an unstaked
  // sender), each on the nonce key viem picks for it.
  const burst = await Promise.all(accounts.flatMap(({ client }) => [...Array(4)].map(async () => {
    const hash = await client.sendUserOperation({ calls: [{ to, value: 1n }] });
    const receipt = await client.waitForUserOperationReceipt({ hash, timeout: 60_000 });
    assert.equal(receipt.success, true, `op ${hash}`);
    return hash;
  })));
  assert.equal(new Set(burst).size, 40);
  assert.equal(await publicClient.getBalance({ address: to }), 50n, 'every transfer landed once');
  Object.assign(out, { deployed: deployed.length, burst, accounts: accounts.map((a) => a.account.address) });
} else {
  // The attacker's account signs on the trader's session-key lane 0; each op waits for the previous.
  const { account, client } = await simpleAccount(BigInt(env('SQUAT_KEY')));
  const hashes = [];
  for (let i = 0; i < Number(env('SQUAT_OPS')); i += 1) {
    const hash = await client.sendUserOperation({ calls: [{ to, value: 1n }] });
    const receipt = await client.waitForUserOperationReceipt({ hash, timeout: 60_000 });
    assert.equal(receipt.success, true, `op ${hash}`);
    hashes.push(hash);
  }
  Object.assign(out, { account: account.address, hashes });
}
console.log(JSON.stringify(out));
