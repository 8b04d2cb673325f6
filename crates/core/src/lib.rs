//! Keyscope's shared vocabulary, used by the relayer, the harness and the CLI.
//!
//! Everything here mirrors a rule of `contracts/account/TradingAccount.sol` bit for bit: a session key
//! that disagrees with the contract about its nonce lane or its signature bytes gets its ops refused
//! on-chain, so these encodings live in one place and are tested against the contract's own rules.

pub mod bindings;
pub mod client;
pub mod deployment;
pub mod devnet;
pub mod grant;
pub mod nonce;
pub mod scope;
pub mod session;
pub mod signer;
pub mod units;
pub mod user_op;

pub use nonce::{NonceError, SessionLane};
pub use session::{SessionSignError, sign_enable_op, sign_session_op};
pub use user_op::{ENTRY_POINT_V08, PackedUserOperation, UserOpError, user_op_hash};
