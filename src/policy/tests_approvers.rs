//! Unit tests of `[approver_keys]`: what is refused, at which line; quorums that signed votes
//! cannot meet; the hash of policies without keys; `policy diff` naming key changes.

use super::*;

const ALICE_KEY: &str = "ed25519:d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
const BOB_KEY: &str = "ed25519:3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c";
// A P-256 point (the generator G, compressed).
const CAROL_KEY: &str = "p256:036b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296";

fn text(keys: &str, quorum: u32, extra_policy: &str) -> String {
    format!(
        r#"
[policy]
name = "t"
{extra_policy}
[roles]
signer = ["spiffe://a/payouts"]
approver = ["spiffe://a/alice", "spiffe://a/bob", "spiffe://a/carol", "spiffe://a/officers/*"]
[approver_keys]
{keys}
[[rules]]
name = "big"
effect = "require_approval"
roles = ["signer"]
approval = {{ quorum = {quorum}, roles = ["approver"], expires = "1h" }}
"#
    )
}

fn keys3() -> String {
    format!(
        "\"spiffe://a/alice\" = \"{ALICE_KEY}\"\n\"spiffe://a/bob\" = [\"{BOB_KEY}\"]\n\"spiffe://a/carol\" = \"{}\"\n",
        CAROL_KEY.to_uppercase().replace("P256:", "p256:")
    )
}

#[test]
fn keys_are_enrolled_in_canonical_form() {
    let p = Policy::from_toml(&text(&keys3(), 3, "")).unwrap();
    assert_eq!(
        p.approver_keys_of("spiffe://a/carol").collect::<Vec<_>>(),
        [CAROL_KEY]
    );
    assert_eq!(p.approver_of_key(BOB_KEY), Some("spiffe://a/bob"));
    assert_eq!(p.approver_of_key(CAROL_KEY), Some("spiffe://a/carol"));
    assert!(!p.unsigned_vote_allowed("spiffe://a/officers/dave"));
}

#[test]
fn refusals_name_their_line() {
    let cases: &[(String, &str, usize)] = &[
        (
            format!("\"spiffe://a/alice\" = \"ed25519:00\"\n\"spiffe://a/bob\" = \"{BOB_KEY}\""),
            "key of 'spiffe://a/alice': not a valid ed25519 public key: expected 32 bytes",
            9,
        ),
        (
            format!("\"spiffe://a/alice\" = \"{ALICE_KEY}\"\n\"spiffe://a/bob\" = \"{ALICE_KEY}\""),
            "is enrolled for 'spiffe://a/alice' (line 9) and for 'spiffe://a/bob': one key, one approver",
            10,
        ),
        (
            format!("\"spiffe://a/officers/*\" = \"{ALICE_KEY}\""),
            "a key is enrolled for one exact principal, not a pattern",
            9,
        ),
        (
            format!("\"spiffe://a/mallory\" = \"{ALICE_KEY}\""),
            "holds no role under [roles]: a typo?",
            9,
        ),
        (
            format!("\"local:sighup\" = \"{ALICE_KEY}\""),
            "is a host principal; it never votes",
            9,
        ),
        (
            "\"spiffe://a/alice\" = 7".to_owned(),
            "is written \"ed25519:<hex>\" or \"p256:<hex>\"",
            9,
        ),
    ];
    for (keys, want, line) in cases {
        let e = Policy::from_toml(&text(keys, 1, "allow_unsigned_votes = true")).unwrap_err();
        let found = e
            .errors
            .iter()
            .find(|x| x.message.contains(want))
            .unwrap_or_else(|| panic!("{want:?} not in:\n{e}"));
        assert_eq!(found.line, *line, "{want}: {e}");
    }
}

#[test]
fn a_quorum_signed_votes_cannot_meet_is_refused_unless_unsigned_votes_are_allowed() {
    let two = format!("\"spiffe://a/alice\" = \"{ALICE_KEY}\"\n\"spiffe://a/bob\" = \"{BOB_KEY}\"");
    assert!(Policy::from_toml(&text(&two, 2, "")).is_ok());
    let e = Policy::from_toml(&text(&two, 3, "")).unwrap_err();
    let found = e
        .errors
        .iter()
        .find(|x| x.message.contains("a quorum of 3 from role(s) approver cannot be met with signed votes: 2 of their holders have an enrolled key (spiffe://a/alice, spiffe://a/bob)"))
        .unwrap_or_else(|| panic!("{e}"));
    assert_eq!(found.line, 15, "at the approval's line: {e}");
    let p = Policy::from_toml(&text(&two, 3, "allow_unsigned_votes = true")).unwrap();
    assert!(p.allow_unsigned_votes);
    assert!(p.unsigned_vote_allowed("spiffe://a/carol"));
    assert!(
        !p.unsigned_vote_allowed("spiffe://a/alice"),
        "a keyed approver always signs"
    );
}

#[test]
fn policies_without_keys_keep_their_hash() {
    // The fields are left out of the canonical JSON when empty or false.
    let without = r#"
[policy]
name = "t"
[roles]
signer = ["spiffe://a/payouts"]
"#;
    let p = Policy::from_toml(without).unwrap();
    assert!(!hash::canonical_json(&p).contains("approver_keys"));
    assert!(!hash::canonical_json(&p).contains("allow_unsigned_votes"));
    let with = Policy::from_toml(&text(&keys3(), 3, "")).unwrap();
    assert!(hash::canonical_json(&with).contains(CAROL_KEY));
}

#[test]
fn diff_names_key_changes() {
    let old = Policy::from_toml(&text(&keys3(), 2, "")).unwrap();
    let rotated = keys3().replace(BOB_KEY, CAROL_KEY).replace(
        &format!(
            "\"spiffe://a/carol\" = \"{}\"",
            CAROL_KEY.to_uppercase().replace("P256:", "p256:")
        ),
        "",
    );
    let new = Policy::from_toml(&text(&rotated, 2, "allow_unsigned_votes = true")).unwrap();
    let changes = diff::diff(&old, &new);
    assert!(
        changes.contains(&format!(
            "approver key of spiffe://a/bob: {CAROL_KEY} enrolled"
        )),
        "{changes:?}"
    );
    assert!(
        changes.contains(&format!(
            "approver key of spiffe://a/bob: {BOB_KEY} removed (its votes on pending requests no longer count)"
        )),
        "{changes:?}"
    );
    assert!(
        changes
            .iter()
            .any(|c| c.starts_with("approver key of spiffe://a/carol") && c.contains("removed")),
        "{changes:?}"
    );
    assert!(
        changes
            .iter()
            .any(|c| c.starts_with("unsigned votes now allowed")),
        "{changes:?}"
    );
}
