//! `keyscope signer` signs matcher requests (cancel, cancel-all, schedule a cancel-all, subscribe) on anvil:
//! each signature verifies as its key's over the request's digest on this chain and for nothing else; a key
//! it does not hold, another account's request and a request that makes no sense are refused before
//! anything is signed; requests skip the rate limit that stops orders; and every decision is in the audit
//! trail.

mod common;

use alloy_primitives::{Address, B256};
use common::*;
use keyscope_core::{
    key::Curve,
    order_request::{MIN_SCHEDULED_CANCEL_MS, REQUEST_WINDOW_MS, Request, RequestAction},
};
use keyscope_signer::audit;

const NOW_MS: u64 = 1_800_000_000_000;

#[tokio::test]
async fn the_sidecar_signs_requests_of_its_keys_and_records_them() {
    let dir = temp_dir("requests");
    let (p256, p256_toml) = keystore_key(&dir, "mm-p256", Curve::P256, "1/1m");
    let (k1, k1_toml) = keystore_key(&dir, "mm-k1", Curve::Secp256k1, "1/1m");
    let setup = Setup::start(42_259, dir, &[p256, k1]).await;
    let (config, auditor) = setup.write_config(&format!("{p256_toml}{k1_toml}"));
    let (task, signer) = start_sidecar(&config, None).await;
    let chain_id = setup.devnet.deployment.chain_id;
    let venue = setup.devnet.deployment.venue;
    let request = |key: Address, action: RequestAction| Request {
        venue,
        account: setup.account,
        key,
        action,
        timestamp_ms: NOW_MS,
    };

    // Every action, on both curves, more than the keys' rate (one a minute) allows: requests skip it.
    let actions = [
        RequestAction::Cancel(vec![B256::repeat_byte(1), B256::repeat_byte(2)]),
        RequestAction::CancelAll,
        RequestAction::ScheduleCancel {
            at_ms: NOW_MS + MIN_SCHEDULED_CANCEL_MS,
        },
        RequestAction::ScheduleCancel { at_ms: 0 },
        RequestAction::Subscribe {
            cancel_on_disconnect: true,
        },
    ];
    for (key, len) in [(p256, 128), (k1, 65)] {
        for action in &actions {
            let r = request(key, action.clone());
            let signed = signer.sign_request(&r).await.unwrap();
            assert_eq!(signed.signature.len(), len, "{action:?}");
            assert_eq!(signed.digest, r.digest(chain_id));
            assert_eq!(signed.key, key);
            assert_eq!(
                r.verify(chain_id, &signed.signature, NOW_MS).unwrap(),
                signed.digest
            );
            // Bound to this chain and to this request.
            assert!(r.verify(chain_id + 1, &signed.signature, NOW_MS).is_err());
            let other = Request {
                timestamp_ms: NOW_MS + 1,
                ..r.clone()
            };
            assert!(
                other
                    .verify(chain_id, &signed.signature, NOW_MS + REQUEST_WINDOW_MS / 2)
                    .is_err()
            );
        }
    }

    // A key it does not hold, another account's request: 4004.
    let stranger = signer
        .sign_request(&request(
            Address::repeat_byte(0x42),
            RequestAction::CancelAll,
        ))
        .await
        .unwrap_err();
    assert_eq!(stranger.code, 4004, "{stranger}");
    let elsewhere = signer
        .sign_request(&Request {
            account: Address::repeat_byte(0xac),
            ..request(k1, RequestAction::CancelAll)
        })
        .await
        .unwrap_err();
    assert_eq!(elsewhere.code, 4004, "{elsewhere}");
    assert!(
        elsewhere.message.contains("signs for"),
        "{}",
        elsewhere.message
    );
    // Nonsense: a cancel of nothing, a schedule sooner than the floor.
    for (bad, why) in [
        (RequestAction::Cancel(vec![]), "names no order"),
        (
            RequestAction::ScheduleCancel {
                at_ms: NOW_MS + MIN_SCHEDULED_CANCEL_MS - 1,
            },
            "at least",
        ),
    ] {
        let refused = signer.sign_request(&request(k1, bad)).await.unwrap_err();
        assert_eq!(refused.code, -32602, "{refused}");
        assert!(refused.message.contains(why), "{why}: {refused}");
    }
    task.stop();

    // 10 signed and 4 refused, all in the trail, unbroken.
    let log = setup.dir.join("audit.jsonl");
    let (entries, _) = audit::verify(&log, auditor).unwrap();
    assert_eq!(entries, 14);
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(text.matches("\"refused\"").count(), 4);
    assert_eq!(text.matches("matcher request").count(), 14);
}

#[tokio::test]
async fn malformed_request_params_are_refused_by_the_protocol() {
    // No chain needed: the socket protocol refuses these before the service sees them.
    let cases = [
        (
            r#"{"id":1,"method":"sign_request","params":{"venue":"0x0000000000000000000000000000000000000001","account":"0x0000000000000000000000000000000000000002","key":"0x0000000000000000000000000000000000000003","action":"cancelSome","timestampMs":1}}"#,
            "unknown action",
        ),
        (
            r#"{"id":1,"method":"sign_request","params":{"venue":"0x0000000000000000000000000000000000000001","account":"0x0000000000000000000000000000000000000002","key":"0x0000000000000000000000000000000000000003","action":"scheduleCancel","timestampMs":1}}"#,
            "needs atMs",
        ),
        (
            r#"{"id":1,"method":"sign_request","params":{"venue":"0x0000000000000000000000000000000000000001","account":"0x0000000000000000000000000000000000000002","key":"0x0000000000000000000000000000000000000003","action":"cancelAll"}}"#,
            "timestampMs",
        ),
    ];
    let dir = temp_dir("request-params");
    let audit_key = dir.join("audit-key.json");
    keyscope_signer::keys::new_keystore(&audit_key, Curve::Secp256k1, PASSWORD).unwrap();
    let auditor = keyscope_core::signer::from_keystore(&audit_key, PASSWORD).unwrap();
    let log = keyscope_signer::audit::AuditLog::open(&dir.join("audit.jsonl"), auditor).unwrap();
    let service = keyscope_signer::SigningService::new(
        Address::repeat_byte(2),
        1,
        Address::repeat_byte(9),
        vec![],
        log,
    );
    for (line, why) in cases {
        let answer = keyscope_signer::server::handle(&service, line).await;
        assert_eq!(answer["error"]["code"], -32602, "{answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains(why), "{why}: {message}");
    }
}
