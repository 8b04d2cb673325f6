// eth-infinitism's SimpleAccountFactory v0.8 where permissionless looks for it on every chain: deployed
// through the deterministic CREATE2 deployer from the published artifact, as on public chains.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { concat, encodeAbiParameters, zeroHash } from 'viem';
import { entryPoint08Address } from 'viem/account-abstraction';

export const SIMPLE_FACTORY = '0x13E9ed32155810FDbd067D4522C492D6f68E5944';

/** Deploys the factory with `funder` unless `publicClient` finds it there already. */
export async function deploySimpleFactory(publicClient, funder) {
  if (await publicClient.getCode({ address: SIMPLE_FACTORY })) return;
  const require = createRequire(import.meta.url);
  const artifact = require.resolve('@account-abstraction/contracts/artifacts/SimpleAccountFactory.json');
  const { bytecode } = JSON.parse(readFileSync(artifact, 'utf8'));
  const hash = await funder.sendTransaction({
    to: '0x4e59b44847b379578588920cA78FbF26c0B4956C',
    data: concat([zeroHash, bytecode, encodeAbiParameters([{ type: 'address' }], [entryPoint08Address])]),
  });
  assert.equal((await publicClient.waitForTransactionReceipt({ hash })).status, 'success');
  assert.ok(await publicClient.getCode({ address: SIMPLE_FACTORY }), 'the factory lands at its canonical address');
}
