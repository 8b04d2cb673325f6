//! API keys bound to accounts and signed requests, on anvil with real accounts: a key registered by the
//! owner's signature checked through the account's ERC-1271, requests signed with Ed25519 over a real HTTP
//! client (and a WebSocket's upgrade), and every refusal beside its positive control — wrong key, tampered
//! body, stale and future timestamps, a replay, a revoked, an expired key, a key whose account changed
//! owner, a key beyond its permission or its account; a flood from one key spread over many client
//! addresses throttled while another key's orders flow; a ban that escalates and recovers.

mod common;

use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use alloy::{
    network::{EthereumWallet, TransactionBuilder},
    providers::{Provider, ProviderBuilder},
    rpc::types::TransactionRequest,
    signers::local::PrivateKeySigner,
    sol_types::SolCall,
};
use alloy_primitives::U256;
use common::{orders::*, *};
use jsonrpsee::{core::client::SubscriptionClientT, rpc_params, ws_client::WsClientBuilder};
use keyscope_core::{
    api_key::{ApiKey, Permission, Registration, Revocation, call_relayer},
    bindings::ISessionManager,
    order::TimeInForce,
    order_request::RequestAction,
};
use keyscope_relayer::config::{BundlingMode, RequireKeys};
use serde_json::{Value, json};

const REQUIRED: i64 = -32630;
const INVALID: i64 = -32631;
const KEY_STALE: i64 = -32632;
const REVOKED: i64 = -32633;
const PERMISSION: i64 = -32634;
const THROTTLED: i64 = -32635;
const BAD_OWNER_SIG: i64 = -32507;

type Http = alloy::transports::http::reqwest::Client;

fn now_s() -> u64 {
    now_ms() / 1000
}

/// `t`'s registration of `key`, signed by `signer` (its owner, or not).
async fn registration(
    s: &Setup,
    t: &Trader,
    key: &ApiKey,
    permission: Permission,
    valid_for_s: u64,
    signer: &PrivateKeySigner,
) -> (Registration, alloy_primitives::Bytes) {
    let reg = Registration {
        api_key: key.id(),
        account: t.account,
        permission,
        expires_at: now_s() + valid_for_s,
        allowed_ips: vec![],
        chain_id: s.devnet.deployment.chain_id,
        nonce: 1,
        issued_at: now_s(),
    };
    let sig = reg.sign(signer).await.unwrap();
    (reg, sig)
}

/// A new key of `t`'s, registered by its owner.
async fn key_of(s: &Setup, t: &Trader, permission: Permission, valid_for_s: u64) -> ApiKey {
    let key = ApiKey::generate();
    let (reg, sig) = registration(s, t, &key, permission, valid_for_s, &t.owner).await;
    s.call("keyscope_registerApiKey", json!([reg, sig]))
        .await
        .unwrap();
    key
}

/// `method` signed with `key` (now, 5 s window) over `http`.
async fn signed_call(
    s: &Setup,
    http: &Http,
    key: &ApiKey,
    method: &str,
    params: Value,
) -> Result<Value, Value> {
    call_relayer(http, &s.relayer.url(), Some(key), 5_000, method, params).await
}

/// POSTs `body` with `headers` as given (to forge, tamper and replay).
async fn post_raw(s: &Setup, headers: &[(&'static str, String)], body: &[u8]) -> Value {
    let mut r = Http::new()
        .post(s.relayer.url())
        .header("content-type", "application/json");
    for (n, v) in headers {
        r = r.header(*n, v);
    }
    let text = r
        .body(body.to_vec())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    serde_json::from_str(&text).unwrap()
}

fn body(method: &str, params: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params}))
        .unwrap()
}

fn err_code(answer: &Value) -> i64 {
    answer["error"]["code"].as_i64().unwrap_or(0)
}

async fn place_signed(s: &Setup, http: &Http, key: &ApiKey, o: &Signed) -> Result<Value, Value> {
    signed_call(s, http, key, "keyscope_placeOrder", json!([o.json, o.sig])).await
}

#[tokio::test]
async fn signed_requests_refuse_a_wrong_key_a_tampered_body_stale_future_and_replayed_requests() {
    let s = setup("apikeys-sig", 42_320, BundlingMode::Auto, |c| {
        c.api_keys.require = RequireKeys::Orders;
    })
    .await;
    let t = s.trader(3200, "100000").await;
    let http = Http::new();

    // Registration: the owner's signature through ERC-1271. Anyone else's is refused and stores nothing.
    let stranger = PrivateKeySigner::random();
    let forged = ApiKey::generate();
    let (reg, sig) = registration(&s, &t, &forged, Permission::Trade, 3_600, &stranger).await;
    let e = s
        .call("keyscope_registerApiKey", json!([reg, sig]))
        .await
        .unwrap_err();
    assert_eq!(code(&e), BAD_OWNER_SIG, "{e}");
    let (mut other_chain, _) =
        registration(&s, &t, &forged, Permission::Trade, 3_600, &t.owner).await;
    other_chain.chain_id = 42_329;
    let sig = other_chain.sign(&t.owner).await.unwrap();
    let e = s
        .call("keyscope_registerApiKey", json!([other_chain, sig]))
        .await
        .unwrap_err();
    assert!(e["message"].as_str().unwrap().contains("chain"), "{e}");
    let key = key_of(&s, &t, Permission::Trade, 3_600).await;
    // A forged key never registered: unknown.
    let e = signed_call(&s, &http, &forged, "keyscope_getBook", json!([0]))
        .await
        .unwrap_err();
    assert_eq!(code(&e), INVALID, "{e}");

    // Orders need a key here; the standard methods do not (positive controls both).
    let o = signed(&s, &t, true, "0.01", "50000", TimeInForce::Gtt, 1).await;
    let e = place(&s, &o).await.unwrap_err();
    assert_eq!(code(&e), REQUIRED, "{e}");
    assert_eq!(
        s.call("eth_chainId", json!([])).await.unwrap(),
        json!("0xa550")
    );
    place_signed(&s, &http, &key, &o).await.unwrap();

    // Listing: with one of the account's keys only.
    let listed = signed_call(&s, &http, &key, "keyscope_listApiKeys", json!([t.account]))
        .await
        .unwrap();
    assert_eq!(
        listed.as_array().unwrap().len(),
        1,
        "the forged registration was not kept: {listed}"
    );
    assert_eq!(listed[0]["status"], "active");
    let e = s
        .call("keyscope_listApiKeys", json!([t.account]))
        .await
        .unwrap_err();
    assert_eq!(code(&e), REQUIRED, "{e}");

    let method_body = body("keyscope_getBook", json!([0]));
    let ok = post_raw(
        &s,
        &key.sign_request("POST", "/", &method_body, now_ms(), 5_000),
        &method_body,
    )
    .await;
    assert!(ok["result"].is_object(), "positive control: {ok}");

    // Wrong key: signed by another key, naming this one.
    let mut h = forged.sign_request("POST", "/", &method_body, now_ms(), 5_000);
    h[0].1 = key.id().to_string();
    assert_eq!(err_code(&post_raw(&s, &h, &method_body).await), INVALID);
    // Tampered body: the signature covers another body.
    let o2 = signed(&s, &t, true, "0.01", "50001", TimeInForce::Gtt, 2).await;
    let meant = body("keyscope_placeOrder", json!([o2.json, o2.sig]));
    let mut evil = o2.json.clone();
    evil["limitPrice"] = json!(e18("1").to_string());
    let tampered = body("keyscope_placeOrder", json!([evil, o2.sig]));
    let h = key.sign_request("POST", "/", &meant, now_ms(), 5_000);
    let a = post_raw(&s, &h, &tampered).await;
    assert_eq!(err_code(&a), INVALID, "{a}");
    // Tampered path.
    let h = key.sign_request("POST", "/other", &method_body, now_ms(), 5_000);
    assert_eq!(err_code(&post_raw(&s, &h, &method_body).await), INVALID);
    // Stale: its window ended; future: ahead of the relayer's clock; too wide a window.
    let h = key.sign_request("POST", "/", &method_body, now_ms() - 10_000, 5_000);
    let a = post_raw(&s, &h, &method_body).await;
    assert_eq!(err_code(&a), KEY_STALE, "{a}");
    assert!(
        a["error"]["message"].as_str().unwrap().contains("stale"),
        "{a}"
    );
    let h = key.sign_request("POST", "/", &method_body, now_ms() + 5_000, 5_000);
    let a = post_raw(&s, &h, &method_body).await;
    assert!(
        a["error"]["message"].as_str().unwrap().contains("ahead"),
        "{a}"
    );
    let h = key.sign_request("POST", "/", &method_body, now_ms(), 3_600_000);
    assert_eq!(err_code(&post_raw(&s, &h, &method_body).await), KEY_STALE);
    // Replay within the window: the first use passes, the same request again is refused.
    let h = key.sign_request("POST", "/", &meant, now_ms(), 5_000);
    let first = post_raw(&s, &h, &meant).await;
    assert!(first["result"]["orderHash"].is_string(), "{first}");
    let again = post_raw(&s, &h, &meant).await;
    assert_eq!(err_code(&again), KEY_STALE, "{again}");
    assert!(
        again["error"]["message"]
            .as_str()
            .unwrap()
            .contains("replayed"),
        "{again}"
    );
    // Missing headers.
    let a = post_raw(
        &s,
        &[(keyscope_core::api_key::HEADER_KEY, key.id().to_string())],
        &method_body,
    )
    .await;
    assert_eq!(err_code(&a), INVALID, "{a}");

    // WebSocket: authenticated once, on the upgrade request.
    let mut headers = http::HeaderMap::new();
    for (n, v) in key.sign_request("GET", "/", b"", now_ms(), 5_000) {
        headers.insert(n, v.parse().unwrap());
    }
    let ws = WsClientBuilder::default()
        .set_headers(headers)
        .build(s.relayer.ws_url())
        .await
        .unwrap();
    let mut sub = ws
        .subscribe::<Value, _>(
            "keyscope_subscribeBook",
            rpc_params![0],
            "keyscope_unsubscribeBook",
        )
        .await
        .unwrap();
    let first = sub.next().await.unwrap().unwrap();
    assert_eq!(first["type"], "snapshot");
    let anonymous = WsClientBuilder::default()
        .build(s.relayer.ws_url())
        .await
        .unwrap();
    let e = anonymous
        .subscribe::<Value, _>(
            "keyscope_subscribeBook",
            rpc_params![0],
            "keyscope_unsubscribeBook",
        )
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("-32630") || e.to_string().contains("API key"),
        "{e}"
    );
    s.relayer.stop().await;
}

#[tokio::test]
async fn revoked_expired_re_owned_and_beyond_permission_keys_are_refused() {
    let s = setup("apikeys-revoke", 42_321, BundlingMode::Auto, |c| {
        c.api_keys.require = RequireKeys::Orders;
        c.api_keys.owner_recheck_ms = 300;
    })
    .await;
    let t = s.trader(3210, "100000").await;
    let other = s.trader(3211, "100000").await;
    let http = Http::new();

    // Permissions: read-only reads only; cancel-only cancels and reads; trade does all.
    let read = key_of(&s, &t, Permission::ReadOnly, 3_600).await;
    let cancel = key_of(&s, &t, Permission::CancelOnly, 3_600).await;
    let trade = key_of(&s, &t, Permission::Trade, 3_600).await;
    let o = signed(&s, &t, true, "0.01", "50000", TimeInForce::Gtt, 1).await;
    signed_call(&s, &http, &read, "keyscope_getBook", json!([0]))
        .await
        .unwrap();
    let e = place_signed(&s, &http, &read, &o).await.unwrap_err();
    assert_eq!(code(&e), PERMISSION, "{e}");
    let e = place_signed(&s, &http, &cancel, &o).await.unwrap_err();
    assert_eq!(code(&e), PERMISSION, "{e}");
    place_signed(&s, &http, &trade, &o).await.unwrap();
    let (f, sig) = request(&s, &t, RequestAction::CancelAll).await;
    let e = signed_call(
        &s,
        &http,
        &read,
        "keyscope_cancelAllOrders",
        json!([f, sig]),
    )
    .await
    .unwrap_err();
    assert_eq!(code(&e), PERMISSION, "{e}");
    let done = signed_call(
        &s,
        &http,
        &cancel,
        "keyscope_cancelAllOrders",
        json!([f, sig]),
    )
    .await
    .unwrap();
    assert_eq!(done["cancelled"].as_array().unwrap().len(), 1, "{done}");
    // A key acts for its own account only: the other trader's signed order, under t's key.
    let theirs = signed(&s, &other, true, "0.01", "50000", TimeInForce::Gtt, 2).await;
    let e = place_signed(&s, &http, &trade, &theirs).await.unwrap_err();
    assert_eq!(code(&e), PERMISSION, "{e}");
    let their_key = key_of(&s, &other, Permission::Trade, 3_600).await;
    place_signed(&s, &http, &their_key, &theirs).await.unwrap();

    // An allow-list: served from its address (127.0.0.5), refused from another (127.0.0.1).
    let listed_ip = ApiKey::generate();
    let (mut reg, _) =
        registration(&s, &t, &listed_ip, Permission::ReadOnly, 3_600, &t.owner).await;
    reg.allowed_ips = vec![IpAddr::from([127, 0, 0, 5])];
    let sig = reg.sign(&t.owner).await.unwrap();
    s.call("keyscope_registerApiKey", json!([reg, sig]))
        .await
        .unwrap();
    let from_5 = Http::builder()
        .local_address(IpAddr::from([127, 0, 0, 5]))
        .build()
        .unwrap();
    signed_call(&s, &from_5, &listed_ip, "keyscope_getBook", json!([0]))
        .await
        .unwrap();
    let e = signed_call(&s, &http, &listed_ip, "keyscope_getBook", json!([0]))
        .await
        .unwrap_err();
    assert_eq!(code(&e), REVOKED, "{e}");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("not allowed from this address"),
        "{e}"
    );

    // Expired.
    let short = key_of(&s, &t, Permission::Trade, 2).await;
    signed_call(&s, &http, &short, "keyscope_getBook", json!([0]))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(3_100)).await;
    let e = signed_call(&s, &http, &short, "keyscope_getBook", json!([0]))
        .await
        .unwrap_err();
    assert_eq!(code(&e), REVOKED, "{e}");
    assert!(e["message"].as_str().unwrap().contains("expired"), "{e}");

    // Revoked: not by a stranger's signature (the key keeps working), by the owner's at once.
    let revoked = key_of(&s, &t, Permission::Trade, 3_600).await;
    let rev = Revocation {
        api_key: revoked.id(),
        account: t.account,
        chain_id: s.devnet.deployment.chain_id,
        issued_at: now_s(),
    };
    let stranger_sig = rev.sign(&PrivateKeySigner::random()).await.unwrap();
    let e = s
        .call("keyscope_revokeApiKey", json!([rev, stranger_sig]))
        .await
        .unwrap_err();
    assert_eq!(code(&e), BAD_OWNER_SIG, "{e}");
    signed_call(&s, &http, &revoked, "keyscope_getBook", json!([0]))
        .await
        .unwrap();
    let sig = rev.sign(&t.owner).await.unwrap();
    s.call("keyscope_revokeApiKey", json!([rev, sig]))
        .await
        .unwrap();
    let e = signed_call(&s, &http, &revoked, "keyscope_getBook", json!([0]))
        .await
        .unwrap_err();
    assert_eq!(code(&e), REVOKED, "{e}");
    // Its old registration cannot bring it back.
    let (reg, sig) = registration(&s, &t, &revoked, Permission::Trade, 3_600, &t.owner).await;
    let e = s
        .call("keyscope_registerApiKey", json!([reg, sig]))
        .await
        .unwrap_err();
    assert!(e["message"].as_str().unwrap().contains("revoked"), "{e}");
    let listed = signed_call(
        &s,
        &http,
        &trade,
        "keyscope_listApiKeys",
        json!([t.account]),
    )
    .await
    .unwrap();
    let status = |k: &ApiKey| {
        listed
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["apiKey"] == json!(k.id()))
            .map(|r| r["status"].clone())
    };
    assert_eq!(status(&revoked), Some(json!("revoked")));
    assert_eq!(status(&short), Some(json!("expired")));
    assert_eq!(status(&trade), Some(json!("active")));

    // The account's owner changes: every key its old owner registered stops within owner_recheck_ms.
    signed_call(&s, &http, &trade, "keyscope_getBook", json!([0]))
        .await
        .unwrap();
    let next_owner = PrivateKeySigner::random();
    s.provider
        .send_transaction(
            TransactionRequest::default()
                .with_to(next_owner.address())
                .with_value(U256::from(10u64).pow(U256::from(17u64))),
        )
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    let transfer = ISessionManager::transferOwnershipCall {
        newOwner: next_owner.address(),
        keepSessions: true,
    }
    .abi_encode();
    let op = s.owner_op(&t, 1, execute(t.account, transfer)).await;
    assert!(s.direct.send(&op).await.unwrap().success);
    let as_next = ProviderBuilder::new()
        .wallet(EthereumWallet::from(next_owner.clone()))
        .connect_http(s.devnet.endpoint_url());
    ISessionManager::new(t.account, &as_next)
        .acceptOwnership()
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    let changed = Instant::now();
    let e = loop {
        match signed_call(&s, &http, &trade, "keyscope_getBook", json!([0])).await {
            Ok(_) => assert!(changed.elapsed() < Duration::from_secs(5), "still served"),
            Err(e) => break e,
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(code(&e), REVOKED, "{e}");
    assert!(
        e["message"].as_str().unwrap().contains("owner changed"),
        "{e}"
    );
    // The new owner registers a key of its own: served.
    let t2 = Trader {
        owner: next_owner,
        account: t.account,
        session: t.session.clone(),
    };
    let fresh = key_of(&s, &t2, Permission::ReadOnly, 3_600).await;
    signed_call(&s, &http, &fresh, "keyscope_getBook", json!([0]))
        .await
        .unwrap();
    s.relayer.stop().await;
}

#[tokio::test]
async fn a_flood_from_one_key_over_many_addresses_is_throttled_while_another_keys_orders_flow_and_bans_escalate_then_lift()
 {
    let s = setup("apikeys-quota", 42_322, BundlingMode::Auto, |c| {
        c.api_keys.orders_per_sec = 2.0;
        c.api_keys.orders_burst = 5.0;
        c.api_keys.cancel_floor_per_sec = 2.0;
        c.api_keys.min_samples = 4;
        c.api_keys.ban_base_ms = 800;
        c.api_keys.forget_ms = 600_000;
    })
    .await;
    let flooder = s.trader(3220, "100000").await;
    let calm = s.trader(3221, "100000").await;
    let fkey = key_of(&s, &flooder, Permission::Trade, 3_600).await;
    let ckey = key_of(&s, &calm, Permission::Trade, 3_600).await;

    // 8 client addresses (127.0.0.2–9), one key: one budget.
    let clients: Vec<Http> = (2..10)
        .map(|i| {
            Http::builder()
                .local_address(IpAddr::from([127, 0, 0, i]))
                .build()
                .unwrap()
        })
        .collect();
    let mut orders = Vec::new();
    for n in 0..24u64 {
        orders.push(
            signed(
                &s,
                &flooder,
                true,
                "0.01",
                "50000",
                TimeInForce::Gtt,
                100 + n,
            )
            .await,
        );
    }
    let calm_orders: Vec<Signed> = {
        let mut v = Vec::new();
        for n in 0..4u64 {
            v.push(signed(&s, &calm, true, "0.01", "49000", TimeInForce::Gtt, 200 + n).await);
        }
        v
    };
    let started = Instant::now();
    let url = s.relayer.url();
    let tasks: Vec<_> = orders
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let (url, http, key, o) = (
                url.clone(),
                clients[i % clients.len()].clone(),
                fkey.clone(),
                o.clone(),
            );
            tokio::spawn(async move {
                call_relayer(
                    &http,
                    &url,
                    Some(&key),
                    5_000,
                    "keyscope_placeOrder",
                    json!([o.json, o.sig]),
                )
                .await
            })
        })
        .collect();
    let mut flood = Vec::new();
    for t in tasks {
        flood.push(t.await.unwrap());
    }
    let mut calm_ok = 0;
    for o in &calm_orders {
        place_signed(&s, &clients[0], &ckey, o).await.unwrap();
        calm_ok += 1;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let taken = flood.iter().filter(|r| r.is_ok()).count();
    let throttled = flood
        .iter()
        .filter(|r| r.as_ref().is_err_and(|e| code(e) == THROTTLED))
        .count();
    assert!(
        taken as f64 <= 5.0 + 2.0 * elapsed + 1.0,
        "one key over 8 addresses took {taken} orders in {elapsed:.2} s (burst 5, 2/s)"
    );
    assert_eq!(
        taken + throttled,
        24,
        "every other order refused as throttled: {flood:?}"
    );
    assert_eq!(calm_ok, 4, "another key's orders flow");
    let metrics = s.metrics().await;
    let refused_line = format!("keyscope_api_key_refused_total{{key=\"{}\"}} ", fkey.id());
    let n: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix(&refused_line))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(n as usize, throttled, "metrics per key");

    // Bad behaviour: orders beyond the key's scope (size 1 > 0.5), refused by the matcher, ban the key.
    let http = &clients[1];
    tokio::time::sleep(Duration::from_millis(3_000)).await; // the order budget refills
    // A fresh key of the flooder's, whose score starts clean (the flood's orders were taken: good).
    let fkey = key_of(&s, &flooder, Permission::Trade, 3_600).await;
    // Orders beyond scope until the gate bans the key: the first refusal that is the gate's, and how many
    // orders the matcher refused before it.
    let ban = |round: u64| {
        let s = &s;
        let flooder = &flooder;
        let fkey = &fkey;
        async move {
            for n in 0..10u64 {
                let bad = signed(
                    s,
                    flooder,
                    true,
                    "1",
                    "50000",
                    TimeInForce::Gtt,
                    1_000 * round + n,
                )
                .await;
                let e = place_signed(s, http, fkey, &bad).await.unwrap_err();
                if code(&e) == THROTTLED {
                    return (e, n);
                }
            }
            panic!("never banned");
        }
    };
    let (e, refused) = ban(1).await;
    assert_eq!(
        refused, 4,
        "banned once min_samples (4) refusals were seen: {e}"
    );
    assert!(e["message"].as_str().unwrap().contains("ban 1"), "{e}");
    // A banned key still cancels (the floor).
    let (f, sig) = request(&s, &flooder, RequestAction::CancelAll).await;
    signed_call(&s, http, &fkey, "keyscope_cancelAllOrders", json!([f, sig]))
        .await
        .unwrap();
    // The ban lifts: a good order is taken again.
    tokio::time::sleep(Duration::from_millis(900)).await;
    let good = signed(&s, &flooder, true, "0.01", "50000", TimeInForce::Gtt, 1_500).await;
    place_signed(&s, http, &fkey, &good).await.unwrap();
    // Misbehaving again: the second ban is twice as long.
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    let (e, _) = ban(2).await;
    let m = e["message"].as_str().unwrap();
    assert!(m.contains("ban 2"), "{e}");
    let remaining: u64 = m
        .split("banned for ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        remaining > 800 && remaining <= 1_600,
        "second ban {remaining} ms"
    );
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let good = signed(&s, &flooder, true, "0.01", "50000", TimeInForce::Gtt, 2_500).await;
    assert_eq!(
        code(&place_signed(&s, http, &fkey, &good).await.unwrap_err()),
        THROTTLED,
        "still banned after the first ban's length"
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    place_signed(&s, http, &fkey, &good).await.unwrap();
    // The calm key never noticed.
    let o = signed(&s, &calm, true, "0.01", "49000", TimeInForce::Gtt, 300).await;
    place_signed(&s, http, &ckey, &o).await.unwrap();
    s.relayer.stop().await;
}
