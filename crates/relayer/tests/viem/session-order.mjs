// A third-party ERC-4337 client, unchanged: viem's bundler client estimates, sends and waits for a
// session-key order through the Keyscope relayer. Only the signature and the callData wrapper are
// Keyscope's own: a session signature is `0x01 ‖ opValidUntil (6 bytes) ‖ r s v` over
// keccak(userOpHash ‖ uint48 until ‖ grantId), and a session op's callData is
// `executeSession(key, execute(…))`, naming the key that signs it.
// Driven by crates/relayer/tests/viem.rs, which passes the chain and the trader in the environment.
import assert from 'node:assert/strict';
import {
  concat, createPublicClient, encodeFunctionData, encodePacked, http, keccak256, parseAbi, toHex,
} from 'viem';
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts';
import { createBundlerClient, getUserOperationHash } from 'viem/account-abstraction';
import { chain, env } from './devnet.mjs';

const entryPointAddress = env('ENTRY_POINT');
const sender = env('ACCOUNT');
const publicClient = createPublicClient({ chain, transport: http(env('RPC_URL')) });
const bundler = createBundlerClient({ chain, transport: http(env('BUNDLER_URL')) });

const supported = await bundler.getSupportedEntryPoints();
assert.ok(supported.map((a) => a.toLowerCase()).includes(entryPointAddress.toLowerCase()), `${supported}`);
assert.equal(await bundler.getChainId(), chain.id);

const session = privateKeyToAccount(env('SESSION_KEY'));
const key = BigInt(session.address) << 32n; // lane 0 of this session key
const nonce = await publicClient.readContract({
  address: entryPointAddress,
  abi: parseAbi(['function getNonce(address sender, uint192 key) view returns (uint256)']),
  functionName: 'getNonce',
  args: [sender, key],
});
const order = encodeFunctionData({
  abi: parseAbi(['function placeOrder(uint32 marketId, int256 sizeDelta, uint256 limitPrice, bool reduceOnly)']),
  functionName: 'placeOrder',
  args: [0, 10n ** 17n, 60500n * 10n ** 18n, false],
});
const execute = encodeFunctionData({
  abi: parseAbi(['function execute(address target, uint256 value, bytes data)']),
  functionName: 'execute',
  args: [env('VENUE'), 0n, order],
});
const callData = encodeFunctionData({
  abi: parseAbi(['function executeSession(address key, bytes calls)']),
  functionName: 'executeSession',
  args: [session.address, execute],
});
const { timestamp } = await publicClient.getBlock();
const until = timestamp + 60n;
const header = concat(['0x01', toHex(until, { size: 6 })]);
const fees = await publicClient.estimateFeesPerGas();

// Estimation with a stub signature: well-formed, by another key, so it fails the signature check —
// which the relayer tolerates when estimating.
const stubSig = await privateKeyToAccount(generatePrivateKey()).sign({ hash: keccak256('0x00') });
const stub = { sender, nonce, callData, signature: concat([header, stubSig]), ...fees };
const gas = await bundler.estimateUserOperationGas({ ...stub, entryPointAddress });
assert.ok(gas.callGasLimit > 0n && gas.verificationGasLimit > 0n && gas.preVerificationGas > 0n, JSON.stringify(gas, (_, v) => `${v}`));

const userOperation = { sender, nonce, callData, ...gas, ...fees, signature: '0x' };
const hash = getUserOperationHash({ chainId: chain.id, entryPointAddress, entryPointVersion: '0.8', userOperation });
const grantId = BigInt(env('GRANT_ID'));
const digest = keccak256(encodePacked(['bytes32', 'uint48', 'uint256'], [hash, until, grantId]));
userOperation.signature = concat([header, await session.sign({ hash: digest })]);

const sent = await bundler.sendUserOperation({ ...userOperation, entryPointAddress });
assert.equal(sent, hash, 'the relayer hashes the op as viem does');
const receipt = await bundler.waitForUserOperationReceipt({ hash: sent, timeout: 60_000, pollingInterval: 200 });
assert.equal(receipt.success, true);
assert.equal(receipt.sender.toLowerCase(), sender.toLowerCase());
const byHash = await bundler.getUserOperation({ hash: sent });
assert.equal(byHash.transactionHash, receipt.receipt.transactionHash);
console.log(JSON.stringify({ userOpHash: sent, transactionHash: receipt.receipt.transactionHash, success: receipt.success }));
