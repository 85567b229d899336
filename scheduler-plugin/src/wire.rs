//! The kube-scheduler extender wire format (`k8s.io/kube-scheduler/extender/v1`), exactly:
//! PascalCase keys as Go emits them, explicit renames for acronyms (`PodUID`), `null` accepted
//! for every list, and lower-case aliases for pre-1.16 schedulers.

use std::borrow::Cow;
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, Pod};
use serde::{Deserialize, Serialize};

/// A `v1.NodeList` as the scheduler sends it: `{"metadata":{},"items":[…]}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeList {
    /// List metadata (empty in practice).
    #[serde(default)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// The nodes.
    #[serde(default, deserialize_with = "null_as_default")]
    pub items: Vec<Node>,
}

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Request body of `filter` and `prioritize`. Node names borrow from the request body (a
/// request can carry thousands); a name that arrives escaped is copied.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ExtenderArgs<'a> {
    /// The pod being scheduled.
    #[serde(rename = "Pod", alias = "pod")]
    pub pod: Pod,
    /// Candidate nodes as full objects (`nodeCacheCapable: false`).
    #[serde(rename = "Nodes", alias = "nodes", default)]
    pub nodes: Option<NodeList>,
    /// Candidate node names (`nodeCacheCapable: true`).
    #[serde(
        rename = "NodeNames",
        alias = "nodenames",
        default,
        borrow,
        deserialize_with = "borrowed_names"
    )]
    pub node_names: Option<Vec<Cow<'a, str>>>,
}

/// A list of strings (or null) that borrows each string when it needs no unescaping.
fn borrowed_names<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Vec<Cow<'de, str>>>, D::Error> {
    struct Name<'de>(Cow<'de, str>);
    impl<'de> Deserialize<'de> for Name<'de> {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> serde::de::Visitor<'de> for V {
                type Value = Name<'de>;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("a node name")
                }
                fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Name<'de>, E> {
                    Ok(Name(Cow::Borrowed(v)))
                }
                fn visit_str<E>(self, v: &str) -> Result<Name<'de>, E> {
                    Ok(Name(Cow::Owned(v.to_owned())))
                }
                fn visit_string<E>(self, v: String) -> Result<Name<'de>, E> {
                    Ok(Name(Cow::Owned(v)))
                }
            }
            d.deserialize_str(V)
        }
    }
    let names: Option<Vec<Name<'de>>> = Option::deserialize(d)?;
    Ok(names.map(|v| v.into_iter().map(|n| n.0).collect()))
}

/// Response body of `filter`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExtenderFilterResult<'a> {
    /// Passing nodes as full objects (when the request carried objects).
    #[serde(rename = "Nodes")]
    pub nodes: Option<NodeList>,
    /// Passing node names (when the request carried names). Never null when names came in:
    /// a null list would mean "every node filtered out".
    #[serde(rename = "NodeNames", borrow)]
    pub node_names: Option<Vec<Cow<'a, str>>>,
    /// Refused nodes and why (preemption may still target them).
    #[serde(rename = "FailedNodes", default, borrow)]
    pub failed_nodes: BTreeMap<Cow<'a, str>, String>,
    /// Refused nodes that preemption cannot help.
    #[serde(rename = "FailedAndUnresolvableNodes", default, borrow)]
    pub failed_and_unresolvable_nodes: BTreeMap<Cow<'a, str>, String>,
    /// Non-empty makes the whole call an error for the scheduler.
    #[serde(rename = "Error", default)]
    pub error: String,
}

/// One entry of the `prioritize` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostPriority<'a> {
    /// Node name.
    #[serde(rename = "Host", borrow)]
    pub host: Cow<'a, str>,
    /// Score in `[0, 10]`.
    #[serde(rename = "Score")]
    pub score: i64,
}

/// Request body of `bind`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtenderBindingArgs {
    /// Pod name.
    #[serde(rename = "PodName", alias = "podName")]
    pub pod_name: String,
    /// Pod namespace.
    #[serde(rename = "PodNamespace", alias = "podNamespace")]
    pub pod_namespace: String,
    /// Pod UID.
    #[serde(rename = "PodUID", alias = "podUID")]
    pub pod_uid: String,
    /// Chosen node.
    #[serde(rename = "Node", alias = "node")]
    pub node: String,
}

/// Response body of `bind`; an empty error means success.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtenderBindingResult {
    /// Why binding failed; empty on success.
    #[serde(rename = "Error")]
    pub error: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_schedulers_filter_request_by_names() {
        // INTERFACES.md §1.8, verbatim.
        let body = r#"{
          "Pod": {
            "metadata": {"name": "job-1", "namespace": "batch", "uid": "0d7f2c1e-5a7b-4d0c-9b8e-2f1a3c4d5e6f"},
            "spec": {"containers": [{"name": "w", "image": "busybox",
              "resources": {"requests": {"cpu": "500m", "example.com/batch-cpu": "2"},
                            "limits":   {"example.com/batch-cpu": "2"}}}]},
            "status": {"phase": "Pending"}
          },
          "Nodes": null,
          "NodeNames": ["node-a", "node-b", "node-c"]
        }"#;
        let args: ExtenderArgs = serde_json::from_str(body).unwrap();
        assert_eq!(args.pod.metadata.name.as_deref(), Some("job-1"));
        assert_eq!(args.nodes, None);
        assert_eq!(args.node_names.unwrap(), ["node-a", "node-b", "node-c"]);
    }

    #[test]
    fn names_borrow_from_the_body_unless_escaped() {
        let body = r#"{"Pod": {"metadata": {}}, "NodeNames": ["node-a", "node\u002db"]}"#;
        let args: ExtenderArgs = serde_json::from_str(body).unwrap();
        let names = args.node_names.unwrap();
        assert!(matches!(names[0], Cow::Borrowed("node-a")));
        assert!(matches!(&names[1], Cow::Owned(s) if s == "node-b"));
    }

    #[test]
    fn decodes_full_node_lists_and_pre_116_lowercase_keys() {
        let body = r#"{"pod": {"metadata": {"name": "p"}}, "nodes": {"metadata": {}, "items": [{"metadata": {"name": "n1"}, "status": {"allocatable": {"cpu": "4"}}}]}, "nodenames": null}"#;
        let args: ExtenderArgs = serde_json::from_str(body).unwrap();
        let nodes = args.nodes.unwrap();
        assert_eq!(nodes.items[0].metadata.name.as_deref(), Some("n1"));
        assert_eq!(args.node_names, None);
        let null_items: ExtenderArgs =
            serde_json::from_str(r#"{"Pod": {"metadata": {}}, "Nodes": {"items": null}}"#).unwrap();
        assert!(null_items.nodes.unwrap().items.is_empty());
    }

    #[test]
    fn encodes_exact_keys() {
        let mut r = ExtenderFilterResult {
            node_names: Some(vec!["node-a".into()]),
            ..Default::default()
        };
        r.failed_nodes
            .insert("node-b".into(), "batch-cpu headroom below request".into());
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"Nodes": null, "NodeNames": ["node-a"], "FailedNodes": {"node-b": "batch-cpu headroom below request"}, "FailedAndUnresolvableNodes": {}, "Error": ""})
        );
        let p = serde_json::to_string(&[HostPriority {
            host: "node-a".into(),
            score: 7,
        }])
        .unwrap();
        assert_eq!(p, r#"[{"Host":"node-a","Score":7}]"#);
        let b: ExtenderBindingArgs = serde_json::from_str(
            r#"{"PodName":"job-1","PodNamespace":"batch","PodUID":"0d7f","Node":"node-a"}"#,
        )
        .unwrap();
        assert_eq!(b.pod_uid, "0d7f");
        assert_eq!(
            serde_json::to_string(&b).unwrap(),
            r#"{"PodName":"job-1","PodNamespace":"batch","PodUID":"0d7f","Node":"node-a"}"#
        );
        assert_eq!(
            serde_json::to_string(&ExtenderBindingResult::default()).unwrap(),
            r#"{"Error":""}"#
        );
    }

    #[test]
    fn malformed_requests_are_errors_that_name_the_problem() {
        let e = serde_json::from_str::<ExtenderArgs>(r#"{"NodeNames": ["a"]}"#).unwrap_err();
        assert!(e.to_string().contains("missing field `Pod`"), "{e}");
        let e =
            serde_json::from_str::<ExtenderArgs>(r#"{"Pod": {"metadata": {}}, "NodeNames": "a"}"#)
                .unwrap_err();
        assert!(e.to_string().contains("invalid type"), "{e}");
        let e = serde_json::from_str::<ExtenderBindingArgs>(r#"{"PodName": "x"}"#).unwrap_err();
        assert!(e.to_string().contains("missing field"), "{e}");
    }
}
