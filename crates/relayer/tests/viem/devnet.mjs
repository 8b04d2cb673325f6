// What the Node clients in this folder share: the test's environment and the devnet as a viem chain.
import { defineChain } from 'viem';

/** An environment variable the Rust test sets, or a clear error. */
export const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`missing ${k}`);
  return v;
};

/** The devnet the test started (CHAIN_ID, RPC_URL). */
export const chain = defineChain({
  id: Number(env('CHAIN_ID')),
  name: 'keyscope-devnet',
  nativeCurrency: { name: 'Ether', symbol: 'ETH', decimals: 18 },
  rpcUrls: { default: { http: [env('RPC_URL')] } },
});
