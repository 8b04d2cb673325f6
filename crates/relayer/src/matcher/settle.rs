//! Settlement: matched fills go to the venue's `settle(Fill[])` in one transaction per interval, signed by
//! the settler key (a settler the venue's owner allowed; the account pays no gas for orders). A batch is
//! simulated first; the venue settles all or none, so a fill the chain would refuse — a key revoked after
//! the match, a leverage or rate limit its account applies at settlement — is found by bisection (the first
//! failing fill of the longest passing prefix, log2 n calls per bad fill), refused with the chain's reason,
//! and the rest go out. The signed transaction is journaled before it is sent and re-sent as it is (same
//! nonce) after a restart or when a reorg drops it, so no fill is settled twice.

use alloy::{
    eips::Encodable2718,
    network::{EthereumWallet, NetworkTransactionBuilder, TransactionBuilder},
    providers::{DynProvider, Provider},
    rpc::types::TransactionRequest,
    sol_types::SolCall,
};
use alloy_primitives::{Address, B256, Bytes};
use keyscope_core::{
    bindings::{ISignedOrderVenue::Fill, PerpVenue},
    refusal::describe_revert,
};

/// Why a batch could not be checked or sent (the node, not a fill).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("settlement: {0}")]
pub(super) struct SettleError(pub String);

fn node(e: impl std::fmt::Display) -> SettleError {
    SettleError(e.to_string())
}

/// The settler: its key, the venue, and the node.
pub(crate) struct Settler {
    pub provider: DynProvider,
    pub wallet: EthereumWallet,
    pub address: Address,
    pub venue: Address,
    pub chain_id: u64,
}

/// What the chain says of a sent batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Landing {
    /// Not in any block the node knows (pending, dropped, or undone by a reorg).
    Nowhere,
    /// In block `block`; `success`: it did not revert.
    Included { block: u64, success: bool },
}

impl Settler {
    fn call_data(fills: &[Fill]) -> Bytes {
        PerpVenue::settleCall {
            fills: fills.to_vec(),
        }
        .abi_encode()
        .into()
    }

    /// `Ok` if `settle(fills)` from the settler would succeed now; the chain's reason if not.
    pub(super) async fn simulate(&self, fills: &[Fill]) -> Result<Result<(), String>, SettleError> {
        let tx = TransactionRequest::default()
            .with_from(self.address)
            .with_to(self.venue)
            .with_input(Self::call_data(fills));
        match self.provider.call(tx).await {
            Ok(_) => Ok(Ok(())),
            Err(e) => match e.as_error_resp() {
                Some(resp) => Ok(Err(resp
                    .as_revert_data()
                    .map(|d| describe_revert(&d))
                    .unwrap_or_else(|| resp.message.to_string()))),
                None => Err(node(e)),
            },
        }
    }

    /// The length of the longest prefix of `fills` that settles, and the reason the next fill fails (None:
    /// all settle).
    pub(super) async fn passing_prefix(
        &self,
        fills: &[Fill],
    ) -> Result<(usize, Option<String>), SettleError> {
        let reason = match self.simulate(fills).await? {
            Ok(()) => return Ok((fills.len(), None)),
            Err(r) => r,
        };
        // Invariant: fills[..lo] passes, fills[..hi] fails with `reason`.
        let (mut lo, mut hi, mut why) = (0usize, fills.len(), reason);
        while hi - lo > 1 {
            let mid = (lo + hi) / 2;
            match self.simulate(&fills[..mid]).await? {
                Ok(()) => lo = mid,
                Err(r) => {
                    hi = mid;
                    why = r;
                }
            }
        }
        // The failing fill alone after the passing prefix: its own reason is the clearer one.
        Ok((lo, Some(why)))
    }

    /// Signs `settle(fills)` with `nonce`; returns the transaction's bytes and hash.
    pub(super) async fn sign(
        &self,
        fills: &[Fill],
        nonce: u64,
    ) -> Result<(Bytes, B256), SettleError> {
        let data = Self::call_data(fills);
        let probe = TransactionRequest::default()
            .with_from(self.address)
            .with_to(self.venue)
            .with_input(data.clone());
        let gas = self.provider.estimate_gas(probe).await.map_err(node)?;
        let fees = self.provider.estimate_eip1559_fees().await.map_err(node)?;
        let envelope = TransactionRequest::default()
            .with_from(self.address)
            .with_to(self.venue)
            .with_input(data)
            // Room for state moving between the estimate and the block.
            .with_gas_limit(gas + gas / 4)
            .with_nonce(nonce)
            .with_chain_id(self.chain_id)
            .with_max_fee_per_gas(fees.max_fee_per_gas)
            .with_max_priority_fee_per_gas(fees.max_priority_fee_per_gas)
            .build(&self.wallet)
            .await
            .map_err(node)?;
        Ok((envelope.encoded_2718().into(), *envelope.tx_hash()))
    }

    /// The settler's next nonce, pending transactions counted.
    pub(super) async fn next_nonce(&self) -> Result<u64, SettleError> {
        self.provider
            .get_transaction_count(self.address)
            .pending()
            .await
            .map_err(node)
    }

    /// The settler's nonce in the latest block.
    pub(super) async fn mined_nonce(&self) -> Result<u64, SettleError> {
        self.provider
            .get_transaction_count(self.address)
            .await
            .map_err(node)
    }

    /// Sends (or sends again) a signed batch. A node that already has it is not an error.
    pub(super) async fn send(&self, raw: &Bytes) -> Result<(), SettleError> {
        match self.provider.send_raw_transaction(raw).await {
            Ok(_) => Ok(()),
            Err(e) => {
                let msg = e.to_string().to_ascii_lowercase();
                if msg.contains("already") || msg.contains("known") {
                    Ok(())
                } else {
                    Err(node(e))
                }
            }
        }
    }

    /// Where a sent batch is.
    pub(super) async fn landing(&self, tx: B256) -> Result<Landing, SettleError> {
        match self
            .provider
            .get_transaction_receipt(tx)
            .await
            .map_err(node)?
        {
            Some(r) => Ok(Landing::Included {
                block: r.block_number.unwrap_or_default(),
                success: r.status(),
            }),
            None => Ok(Landing::Nowhere),
        }
    }

    /// The head's number.
    pub(super) async fn head(&self) -> Result<u64, SettleError> {
        self.provider.get_block_number().await.map_err(node)
    }

    /// Whether the venue lets this key settle.
    pub(super) async fn allowed(&self) -> Result<bool, SettleError> {
        PerpVenue::new(self.venue, &self.provider)
            .isSettler(self.address)
            .call()
            .await
            .map_err(node)
    }
}
