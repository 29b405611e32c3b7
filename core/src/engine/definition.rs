//! Pipeline definitions: the JSON document, its validation, and the built-in default pipeline.
//!
//! ```json
//! {"version": "1", "description": "...", "defaults": {"max_retries": 3, "timeout_seconds": 120},
//!  "nodes": [{"id": "ingest", "type": "ingest", "config": {}, "next": "context",
//!             "required": true, "skip_if_errors": false}, ...]}
//! ```
//! The first node is the entry; the engine follows `next` (a node id, or a list of ids to fan
//! out). A node runs after every node that leads to it. Validation reports every problem at once.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::plugin::{BuildContext, Plugins};

/// Node types the engine runs itself (not plugins).
pub const BUILTIN_NODE_TYPES: &[&str] = &["transform"];

/// Engine defaults of a definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    /// Retries per node after the first attempt, for temporary errors. Default 3.
    #[serde(default = "default_retries")]
    pub max_retries: u32,
    /// Deadline of one node attempt in seconds. Default 120.
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
}

fn default_retries() -> u32 {
    3
}

fn default_timeout() -> u64 {
    120
}

fn default_true() -> bool {
    true
}

impl Default for Defaults {
    fn default() -> Self {
        Self {
            max_retries: default_retries(),
            timeout_seconds: default_timeout(),
        }
    }
}

/// `next`: one node id or several.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Next {
    /// One successor.
    One(String),
    /// Several successors, run in this order.
    Many(Vec<String>),
}

impl Next {
    /// The successor ids.
    pub fn ids(&self) -> Vec<&str> {
        match self {
            Self::One(id) => vec![id.as_str()],
            Self::Many(ids) => ids.iter().map(String::as_str).collect(),
        }
    }
}

/// One node of a definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    /// Unique id within the definition.
    pub id: String,
    /// Node type: `ingest`, `context`, `intelligence`, `notify`, `transform`, or a plugin's.
    #[serde(rename = "type")]
    pub kind: String,
    /// The node's config, checked by its type.
    #[serde(default)]
    pub config: Value,
    /// Successors.
    #[serde(default)]
    pub next: Option<Next>,
    /// When false, a failure of this node is recorded (as skipped, with the reason) and the run
    /// goes on. Default true.
    #[serde(default = "default_true")]
    pub required: bool,
    /// Skip this node when an earlier optional node failed. Default false.
    #[serde(default)]
    pub skip_if_errors: bool,
}

/// A pipeline definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Definition {
    /// Format version; `"1"` (`"1.0"` is accepted).
    pub version: String,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Engine defaults.
    #[serde(default)]
    pub defaults: Defaults,
    /// The nodes; the first is the entry.
    pub nodes: Vec<Node>,
}

/// One validation problem, naming the node it concerns when there is one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// The node, if the problem is about one.
    pub node: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.node {
            Some(n) => write!(f, "node {n:?}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

fn problem(node: Option<&str>, message: impl Into<String>) -> Problem {
    Problem {
        node: node.map(str::to_owned),
        message: message.into(),
    }
}

/// Joins problems into one message.
pub fn describe(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl Definition {
    /// The built-in default pipeline: `ingest -> context -> intelligence -> notify`.
    pub fn default_pipeline() -> Self {
        let node = |id: &str, next: Option<&str>, required: bool| Node {
            id: id.to_owned(),
            kind: id.to_owned(),
            config: Value::Object(Default::default()),
            next: next.map(|n| Next::One(n.to_owned())),
            required,
            skip_if_errors: false,
        };
        Self {
            version: "1".to_owned(),
            description: "The default pipeline: ingest, check this machine, analyse, notify."
                .to_owned(),
            defaults: Defaults::default(),
            nodes: vec![
                node("ingest", Some("context"), true),
                node("context", Some("intelligence"), false),
                node("intelligence", Some("notify"), false),
                node("notify", None, true),
            ],
        }
    }

    /// Parses a definition document; the shape problems (missing version, unknown fields, wrong
    /// types) come back as problems, like the rest of validation.
    pub fn parse(doc: &Value) -> Result<Self, Vec<Problem>> {
        let mut problems = Vec::new();
        let Some(obj) = doc.as_object() else {
            return Err(vec![problem(None, "a definition must be a JSON object")]);
        };
        if !obj.contains_key("version") {
            problems.push(problem(None, "missing \"version\" (use \"1\")"));
        }
        match obj.get("nodes") {
            None => problems.push(problem(None, "missing \"nodes\"")),
            Some(Value::Array(n)) if n.is_empty() => problems.push(problem(
                None,
                "\"nodes\" is empty; a pipeline needs at least one node",
            )),
            _ => {}
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        serde_json::from_value::<Self>(doc.clone())
            .map_err(|e| vec![problem(None, format!("invalid definition: {e}"))])
    }

    /// Every problem of this definition, or none. Node configs are checked by building each node
    /// (no I/O).
    pub fn validate(&self, plugins: &Plugins) -> Vec<Problem> {
        let mut problems = Vec::new();
        if self.version != "1" && self.version != "1.0" {
            problems.push(problem(
                None,
                format!("unsupported version {:?}; expected \"1\"", self.version),
            ));
        }
        if self.nodes.is_empty() {
            problems.push(problem(
                None,
                "no nodes; a pipeline needs at least one node",
            ));
            return problems;
        }
        let mut seen = BTreeSet::new();
        for n in &self.nodes {
            if n.id.trim().is_empty() {
                problems.push(problem(None, "a node has an empty id"));
            } else if !seen.insert(n.id.as_str()) {
                problems.push(problem(Some(&n.id), "duplicate node id"));
            }
        }
        for n in &self.nodes {
            if BUILTIN_NODE_TYPES.contains(&n.kind.as_str()) {
                if let Err(e) = super::transform::TransformConfig::parse(&n.config) {
                    problems.push(problem(Some(&n.id), e.message().to_owned()));
                }
            } else {
                match plugins.stages.get(&n.kind) {
                    Ok(d) => {
                        if let Err(e) = (d.build)(&n.config, &BuildContext::default()) {
                            problems.push(problem(
                                Some(&n.id),
                                format!("invalid config: {}", e.message()),
                            ));
                        }
                    }
                    Err(_) => {
                        let mut known: Vec<&str> = plugins.stages.names();
                        known.extend(BUILTIN_NODE_TYPES);
                        known.sort_unstable();
                        problems.push(problem(
                            Some(&n.id),
                            format!(
                                "unknown type {:?}; known types: {}",
                                n.kind,
                                known.join(", ")
                            ),
                        ));
                    }
                }
            }
            for next in n.next.iter().flat_map(Next::ids) {
                if !seen.contains(next) {
                    problems.push(problem(
                        Some(&n.id),
                        format!("\"next\" names unknown node {next:?}"),
                    ));
                }
            }
        }
        // Cycles and reachability, over the edges that point at known nodes.
        let edges = self.edges();
        if let Some(cycle) = find_cycle(&self.nodes, &edges) {
            problems.push(problem(
                Some(&cycle[0]),
                format!("cycle: {}", cycle.join(" -> ")),
            ));
        }
        let reachable = self.reachable(&edges);
        for n in &self.nodes {
            if !reachable.contains(n.id.as_str()) {
                problems.push(problem(
                    Some(&n.id),
                    format!("unreachable from the entry node {:?}", self.nodes[0].id),
                ));
            }
        }
        problems
    }

    fn edges(&self) -> BTreeMap<&str, Vec<&str>> {
        let ids: BTreeSet<&str> = self.nodes.iter().map(|n| n.id.as_str()).collect();
        // Duplicate ids (reported elsewhere) pool their edges, so a cycle through either is seen.
        let mut edges: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for n in &self.nodes {
            edges.entry(n.id.as_str()).or_default().extend(
                n.next
                    .iter()
                    .flat_map(Next::ids)
                    .filter(|i| ids.contains(i)),
            );
        }
        edges
    }

    fn reachable(&self, edges: &BTreeMap<&str, Vec<&str>>) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut queue = VecDeque::from([self.nodes[0].id.as_str()]);
        while let Some(id) = queue.pop_front() {
            if seen.insert(id.to_owned()) {
                queue.extend(edges.get(id).into_iter().flatten().copied());
            }
        }
        seen
    }

    /// The order nodes run in: reachable nodes, each after all nodes leading to it, ties broken by
    /// their order in the document. Call on a valid definition.
    pub fn execution_order(&self) -> Vec<&Node> {
        let edges = self.edges();
        let reachable = self.reachable(&edges);
        let mut indegree: BTreeMap<&str, usize> =
            self.nodes.iter().map(|n| (n.id.as_str(), 0)).collect();
        for (from, tos) in &edges {
            if reachable.contains(*from) {
                for to in tos {
                    *indegree.entry(to).or_default() += 1;
                }
            }
        }
        let mut order = Vec::new();
        let mut done = BTreeSet::new();
        loop {
            let next = self.nodes.iter().find(|n| {
                reachable.contains(&n.id)
                    && !done.contains(n.id.as_str())
                    && indegree[n.id.as_str()] == 0
            });
            let Some(n) = next else { break };
            done.insert(n.id.as_str());
            for to in &edges[n.id.as_str()] {
                if let Some(d) = indegree.get_mut(to) {
                    *d = d.saturating_sub(1);
                }
            }
            order.push(n);
        }
        order
    }

    /// The node with this id.
    pub fn node(&self, id: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.id == id)
    }
}

fn find_cycle(nodes: &[Node], edges: &BTreeMap<&str, Vec<&str>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    fn visit<'a>(
        id: &'a str,
        edges: &BTreeMap<&'a str, Vec<&'a str>>,
        marks: &mut BTreeMap<&'a str, Mark>,
        path: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        marks.insert(id, Mark::Active);
        path.push(id);
        for &to in edges.get(id).into_iter().flatten() {
            match marks.get(to).copied().unwrap_or(Mark::New) {
                Mark::Active => {
                    let start = path.iter().position(|p| *p == to).unwrap_or(0);
                    let mut cycle: Vec<String> =
                        path[start..].iter().map(|s| (*s).to_owned()).collect();
                    cycle.push(to.to_owned());
                    return Some(cycle);
                }
                Mark::New => {
                    if let Some(c) = visit(to, edges, marks, path) {
                        return Some(c);
                    }
                }
                Mark::Done => {}
            }
        }
        path.pop();
        marks.insert(id, Mark::Done);
        None
    }
    let mut marks: BTreeMap<&str, Mark> = BTreeMap::new();
    for n in nodes {
        if marks.get(n.id.as_str()).copied().unwrap_or(Mark::New) == Mark::New
            && let Some(c) = visit(n.id.as_str(), edges, &mut marks, &mut Vec::new())
        {
            return Some(c);
        }
    }
    None
}

/// The pipeline status a node type reports once it completed.
pub fn status_after(kind: &str) -> Option<crate::domain::PipelineStatus> {
    use crate::domain::PipelineStatus as S;
    match kind {
        "ingest" => Some(S::Ingested),
        "context" => Some(S::Checked),
        "intelligence" => Some(S::Analyzed),
        "notify" => Some(S::Notified),
        _ => None,
    }
}
