//! The objects a provider keeps for a target, and how live objects are compared with them.

use serde_json::Value;

use crate::kube::{MANAGED_BY, MANAGED_BY_VALUE, Resource, TARGET_ANNOTATION};

/// One object rangekeeper keeps for a target: where it lives and the whole body that a
/// server-side apply sends (`apiVersion`, `kind`, `metadata`, `spec`).
#[derive(Debug, Clone, PartialEq)]
pub struct Obj {
    pub res: Resource,
    pub namespace: Option<String>,
    pub name: String,
    pub body: Value,
}

impl Obj {
    /// An object of `res` named `name` with rangekeeper's label and target annotation (plus
    /// `labels`) and `spec`.
    pub fn new(
        res: Resource,
        namespace: Option<&str>,
        name: &str,
        target: &str,
        labels: &[(String, String)],
        spec: Value,
    ) -> Obj {
        let mut label_map = serde_json::Map::new();
        label_map.insert(MANAGED_BY.into(), Value::String(MANAGED_BY_VALUE.into()));
        for (k, v) in labels {
            label_map.insert(k.clone(), Value::String(v.clone()));
        }
        let mut meta = serde_json::Map::new();
        meta.insert("name".into(), Value::String(name.to_owned()));
        if let Some(ns) = namespace {
            meta.insert("namespace".into(), Value::String(ns.to_owned()));
        }
        meta.insert("labels".into(), Value::Object(label_map));
        meta.insert(
            "annotations".into(),
            serde_json::json!({ TARGET_ANNOTATION: target }),
        );
        let body = serde_json::json!({
            "apiVersion": res.api_version(),
            "kind": res.kind,
            "metadata": meta,
            "spec": spec,
        });
        Obj {
            res,
            namespace: namespace.map(str::to_owned),
            name: name.to_owned(),
            body,
        }
    }

    pub fn ns(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    /// `NetworkPolicy `web/allow``.
    pub fn describe(&self) -> String {
        self.res.describe(self.ns(), &self.name)
    }

    /// Where the live object differs from this one in what rangekeeper sets (its labels,
    /// its annotation and everything outside `metadata`), as a path (`spec.ingress[0]`);
    /// fields only the live object has (server defaults, other managers' additions) are not
    /// differences.
    pub fn differs(&self, live: &Value) -> Option<String> {
        for key in ["labels", "annotations"] {
            if let Some(p) = diff(
                &self.body["metadata"][key],
                &live["metadata"][key],
                &format!("metadata.{key}"),
            ) {
                return Some(p);
            }
        }
        let (Value::Object(want), Value::Object(_)) = (&self.body, live) else {
            return Some(String::new());
        };
        for (k, v) in want {
            if matches!(k.as_str(), "metadata" | "apiVersion" | "kind") {
                continue;
            }
            if let Some(p) = diff(v, &live[k], k) {
                return Some(p);
            }
        }
        None
    }
}

/// The first path where `live` does not hold `want` (objects: every key of `want`, with
/// extra keys allowed; arrays: the same length, element by element; numbers by value).
fn diff(want: &Value, live: &Value, at: &str) -> Option<String> {
    match (want, live) {
        (Value::Object(w), Value::Object(l)) => w.iter().find_map(|(k, v)| {
            let child = format!("{at}.{k}");
            match l.get(k) {
                Some(lv) => diff(v, lv, &child),
                None if is_empty(v) => None,
                None => Some(child),
            }
        }),
        (Value::Object(w), Value::Null) if w.is_empty() => None,
        (Value::Array(w), Value::Array(l)) => {
            if w.len() != l.len() {
                return Some(at.to_owned());
            }
            w.iter()
                .zip(l)
                .enumerate()
                .find_map(|(i, (a, b))| diff(a, b, &format!("{at}[{i}]")))
        }
        (Value::Number(a), Value::Number(b)) => (a.as_f64() != b.as_f64()).then(|| at.to_owned()),
        (a, b) => (a != b).then(|| at.to_owned()),
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Null => true,
        _ => false,
    }
}

/// A whole number as a JSON integer, any other as a float (so `order: 20` reads back equal).
pub fn number(x: f64) -> Value {
    if x.fract() == 0.0 && x.abs() < 9.0e15 {
        #[allow(clippy::cast_possible_truncation)]
        let i = x as i64;
        Value::from(i)
    } else {
        Value::from(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn res() -> Resource {
        Resource {
            group: "networking.k8s.io".into(),
            version: "v1".into(),
            plural: "networkpolicies",
            kind: "NetworkPolicy",
            namespaced: true,
        }
    }

    #[test]
    fn server_defaults_are_not_drift_and_edits_are() {
        let o = Obj::new(
            res(),
            Some("web"),
            "p",
            "t",
            &[],
            json!({"podSelector": {}, "ingress": [{"ports": [{"port": 443, "protocol": "TCP"}]}]}),
        );
        let mut live = o.body.clone();
        live["metadata"]["uid"] = json!("x");
        live["metadata"]["labels"]["extra"] = json!("y");
        assert_eq!(o.differs(&live), None);
        live["spec"]["ingress"][0]["ports"][0]["port"] = json!(8443);
        assert_eq!(
            o.differs(&live).as_deref(),
            Some("spec.ingress[0].ports[0].port")
        );
        let mut gone = o.body.clone();
        gone["metadata"]["labels"] = json!({});
        assert_eq!(
            o.differs(&gone).as_deref(),
            Some("metadata.labels.app.kubernetes.io/managed-by")
        );
    }

    #[test]
    fn whole_numbers_read_back_equal() {
        assert_eq!(number(20.0), json!(20));
        assert_eq!(number(2.5), json!(2.5));
        assert_eq!(diff(&json!(20.0), &json!(20), "order"), None);
    }
}
