//! Leases stored as annotations on the object that holds a target's ranges (the
//! NetworkPolicy of `netpol`, the GlobalNetworkPolicy of `calico`).
//!
//! Each lease is one annotation `rangekeeper.dev/lease-<id>` whose value is the lease's JSON
//! form (`{"id":…,"address":…,"expires":…,"requestedBy":…}`, as `-o json` and the `file`
//! provider write it). The key has the `rangekeeper.dev/` prefix like the object's
//! `rangekeeper.dev/target` annotation: Kubernetes leaves unprefixed annotation keys to the
//! object's users and asks automated tools to prefix theirs. The annotations travel in the
//! same server-side apply as the ranges, with the object's `metadata.resourceVersion`, so
//! the API server refuses the write (409 Conflict) when the object changed since it was read.
//!
//! Limits checked before anything is sent: an annotation key's name part has at most 63
//! characters and begins and ends with a letter or digit (so a lease id ending in `-` cannot
//! be stored here), and all annotations of one object together hold at most 256 KiB (keys
//! and values, other tools' annotations included).

use std::collections::BTreeMap;

use rangekeeper_provider::Lease;
use serde_json::{Map, Value};

/// The prefix of every lease annotation's key.
pub const ANNOTATION_PREFIX: &str = "rangekeeper.dev/lease-";

/// Most bytes all annotations of one object may hold together, keys and values
/// (`TotalAnnotationSizeLimitB` of the API server's validation: 256 KiB).
pub const MAX_ANNOTATION_BYTES: usize = 256 * 1024;

/// Most characters of the name part of an annotation key (after the `prefix/`).
pub const MAX_KEY_NAME: usize = 63;

/// The annotation key of a lease; an id that does not make a valid key is refused, saying
/// why.
pub fn key(lease: &Lease) -> Result<String, String> {
    let key = format!("{ANNOTATION_PREFIX}{}", lease.id);
    let name = key.rsplit('/').next().unwrap_or(&key);
    let ends_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if name.len() > MAX_KEY_NAME {
        return Err(format!(
            "lease {} cannot be stored as a Kubernetes annotation: the key `{key}` has a name of {} characters, and Kubernetes allows {MAX_KEY_NAME}",
            lease.id,
            name.len()
        ));
    }
    if !ends_ok(name.chars().next()) || !ends_ok(name.chars().last()) {
        return Err(format!(
            "lease {} cannot be stored as a Kubernetes annotation: the key `{key}` must begin and end with a letter or digit",
            lease.id
        ));
    }
    Ok(key)
}

/// The annotation value of a lease: its JSON form.
pub fn value(lease: &Lease) -> String {
    // A Lease is plain data (strings, an address, a time): serializing it cannot fail.
    serde_json::to_string(lease).unwrap_or_default()
}

/// The lease annotations of `leases`, key to value; refused when a key is not valid.
pub fn annotations(leases: &[Lease]) -> Result<BTreeMap<String, String>, String> {
    leases.iter().map(|l| Ok((key(l)?, value(l)))).collect()
}

/// The lease annotations an object carries now, key to value.
pub fn held(obj: &Value) -> BTreeMap<String, String> {
    obj["metadata"]["annotations"]
        .as_object()
        .map(|a| {
            a.iter()
                .filter(|(k, _)| k.starts_with(ANNOTATION_PREFIX))
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// The leases an object's annotations hold; an annotation that cannot be read is an error
/// naming it.
pub fn leases_of(obj: &Value) -> Result<Vec<Lease>, String> {
    let mut out = Vec::new();
    for (k, v) in held(obj) {
        let id = &k[ANNOTATION_PREFIX.len()..];
        let lease: Lease = serde_json::from_str(&v).map_err(|e| {
            format!(
                "the lease annotation `{k}` = `{}` is not a lease record ({e})",
                v.escape_debug()
            )
        })?;
        if lease.id.as_str() != id {
            return Err(format!(
                "the lease annotation `{k}` holds lease `{}`, not `{id}`",
                lease.id
            ));
        }
        out.push(lease);
    }
    Ok(out)
}

/// Bytes of an object's annotations as the API server counts them (every key and value).
fn size(annotations: &Map<String, Value>) -> usize {
    annotations
        .iter()
        .map(|(k, v)| k.len() + v.as_str().map_or(0, str::len))
        .sum()
}

/// Put `leases` into the annotations of `body` (what a server-side apply sends), and check
/// that the object's annotations then fit: those of other tools on `live` (kept by the
/// server) plus what rangekeeper sends. `what` names the object in the refusal.
pub fn set(
    body: &mut Value,
    leases: &BTreeMap<String, String>,
    live: Option<&Value>,
    what: &str,
) -> Result<(), String> {
    let Some(meta) = body.get_mut("metadata").and_then(Value::as_object_mut) else {
        return Err(format!("{what} has no metadata to put leases in"));
    };
    let ann = meta
        .entry("annotations")
        .or_insert_with(|| Value::Object(Map::new()));
    let Some(ann) = ann.as_object_mut() else {
        return Err(format!("{what}: annotations are not a map"));
    };
    for (k, v) in leases {
        ann.insert(k.clone(), Value::String(v.clone()));
    }
    let mut all = ann.clone();
    if let Some(Value::Object(theirs)) = live.map(|l| &l["metadata"]["annotations"]) {
        for (k, v) in theirs {
            if !k.starts_with(ANNOTATION_PREFIX) && !all.contains_key(k) {
                all.insert(k.clone(), v.clone());
            }
        }
    }
    let total = size(&all);
    if total > MAX_ANNOTATION_BYTES {
        let ours: usize = leases.iter().map(|(k, v)| k.len() + v.len()).sum();
        return Err(format!(
            "the leases do not fit: Kubernetes allows {MAX_ANNOTATION_BYTES} bytes (256 KiB) of annotations per object, and {what} would carry {total} bytes, {ours} of them in {} lease annotation{}",
            leases.len(),
            if leases.len() == 1 { "" } else { "s" }
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rangekeeper_provider::{LeaseId, Timestamp};
    use serde_json::json;

    fn lease(id: &str) -> Lease {
        Lease {
            id: LeaseId::parse(id).unwrap(),
            address: "203.0.113.7".parse().unwrap(),
            expires: Timestamp::parse("2026-12-07T02:30:00Z").unwrap(),
            requested_by: "alice@github:org/repo/actions/runs/123".into(),
            reason: Some("deploy \"prod\" ü".into()),
        }
    }

    #[test]
    fn a_lease_reads_back_from_its_annotation() {
        let l = lease("abc123");
        let a = annotations(std::slice::from_ref(&l)).unwrap();
        assert_eq!(
            a.keys().collect::<Vec<_>>(),
            ["rangekeeper.dev/lease-abc123"]
        );
        let mut obj = json!({"metadata": {"name": "p"}});
        set(&mut obj, &a, None, "NetworkPolicy `web/p`").unwrap();
        obj["metadata"]["annotations"]["rangekeeper.dev/target"] = json!("t");
        obj["metadata"]["annotations"]["other"] = json!("x");
        assert_eq!(leases_of(&obj).unwrap(), vec![l]);
        assert_eq!(held(&obj), a);
    }

    #[test]
    fn ids_that_make_no_valid_key_are_refused() {
        // The longest id makes a name of 6 + 32 characters: within 63.
        assert!(key(&lease(&"a".repeat(32))).is_ok());
        let e = key(&lease("abc-")).unwrap_err();
        assert!(e.contains("begin and end with a letter or digit"), "{e}");
    }

    #[test]
    fn unreadable_or_mismatched_annotations_are_errors_naming_them() {
        let obj = json!({"metadata": {"annotations": {"rangekeeper.dev/lease-x1": "garbage"}}});
        let e = leases_of(&obj).unwrap_err();
        assert!(e.contains("rangekeeper.dev/lease-x1"), "{e}");
        let other = value(&lease("y2"));
        let obj = json!({"metadata": {"annotations": {"rangekeeper.dev/lease-x1": other}}});
        let e = leases_of(&obj).unwrap_err();
        assert!(e.contains("holds lease `y2`"), "{e}");
    }

    #[test]
    fn annotations_past_256_kib_are_refused_counting_other_tools() {
        let live = json!({"metadata": {"annotations": {
            "kubectl.kubernetes.io/last-applied-configuration": "x".repeat(MAX_ANNOTATION_BYTES - 200),
            "rangekeeper.dev/lease-old": "counted as ours, not theirs",
        }}});
        let mut body = json!({"metadata": {"annotations": {"rangekeeper.dev/target": "t"}}});
        assert!(set(&mut body.clone(), &BTreeMap::new(), Some(&live), "p").is_ok());
        let a = annotations(&[lease("abc123")]).unwrap();
        let e = set(&mut body, &a, Some(&live), "NetworkPolicy `web/p`").unwrap_err();
        assert!(
            e.contains("262144 bytes") && e.contains("1 lease annotation"),
            "{e}"
        );
    }
}
