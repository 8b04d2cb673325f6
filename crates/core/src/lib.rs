//! Keyscope's SDK and the one Rust mirror of its contracts, used by the CLI, the harness and the relayer.
//!
//! The encodings here — nonce lanes, session signatures, grant digests, userOp hashes — mirror
//! `contracts/account/TradingAccount.sol` and EntryPoint v0.8 bit for bit: a key that disagrees with the
//! contract about them gets its ops refused on-chain, so they live in one place and are tested against
//! the contracts themselves (shared test vectors, and cross-checks on anvil). On top of them: contract
//! bindings generated from the forge artifacts, signers, scope building, a client that simulates and
//! submits ops, the deploy plan, and (feature `devnet`) an anvil devnet for tests and `keyscope devnet`.

#![warn(missing_docs)]
#![warn(unreachable_pub)]

pub mod api_key;
pub mod bindings;
pub mod client;
pub mod deploy;
pub mod deployment;
#[cfg(feature = "devnet")]
pub mod devnet;
pub mod fees;
pub mod grant;
pub mod key;
pub mod layout;
pub mod nonce;
pub mod ops;
pub mod order;
pub mod order_request;
pub mod outflow;
pub mod policy;
pub mod refusal;
pub mod rpc_op;
pub mod scope;
pub mod session;
pub mod signer;
pub mod units;
pub mod user_op;

pub use key::{Curve, KeySigner, P256Key};
pub use nonce::{NonceError, SessionLane};
pub use session::{SessionSignError, sign_enable_op, sign_session_op};
pub use user_op::{ENTRY_POINT_V08, PackedUserOperation, UserOpError, user_op_hash};
