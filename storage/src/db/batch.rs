//! Write batches: the operations a commit applies together, and what it changed.

use super::*;

/// A node given by dense id or by external key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeRef {
    /// Dense per-type id.
    Id(u32),
    /// External key.
    Key(String),
}

impl From<u32> for NodeRef {
    fn from(id: u32) -> Self {
        NodeRef::Id(id)
    }
}

impl From<&str> for NodeRef {
    fn from(k: &str) -> Self {
        NodeRef::Key(k.to_string())
    }
}

impl From<String> for NodeRef {
    fn from(k: String) -> Self {
        NodeRef::Key(k)
    }
}

#[derive(Debug, Clone)]
pub(super) enum Op {
    Node {
        ty: u32,
        key: String,
    },
    /// `weight: None` deletes.
    Edge {
        rel: u32,
        src: NodeRef,
        dst: NodeRef,
        weight: Option<f32>,
    },
    /// `value: None` removes the property.
    Property {
        ty: u32,
        node: NodeRef,
        name: String,
        value: Option<Value>,
    },
    DeleteNode {
        ty: u32,
        node: NodeRef,
    },
}

/// Writes to apply together with [`Database::commit`].
#[derive(Debug, Clone, Default)]
pub struct WriteBatch {
    pub(super) ops: Vec<Op>,
}

impl WriteBatch {
    /// Inserts a node of type `ty` unless one with that key exists.
    pub fn insert_node(&mut self, ty: u32, key: impl Into<String>) -> &mut Self {
        self.ops.push(Op::Node { ty, key: key.into() });
        self
    }

    /// Inserts edge `src -rel-> dst` (weight 1 when `None`), creating missing
    /// endpoint nodes given by key. Inserting an existing edge sets its weight.
    pub fn insert_edge(
        &mut self,
        rel: u32,
        src: impl Into<NodeRef>,
        dst: impl Into<NodeRef>,
        weight: Option<f32>,
    ) -> &mut Self {
        self.ops.push(Op::Edge {
            rel,
            src: src.into(),
            dst: dst.into(),
            weight: Some(weight.unwrap_or(1.0)),
        });
        self
    }

    /// Deletes edge `src -rel-> dst` if present.
    pub fn delete_edge(&mut self, rel: u32, src: impl Into<NodeRef>, dst: impl Into<NodeRef>) -> &mut Self {
        self.ops.push(Op::Edge {
            rel,
            src: src.into(),
            dst: dst.into(),
            weight: None,
        });
        self
    }

    /// Sets a property of an existing node.
    pub fn set_property(&mut self, ty: u32, node: impl Into<NodeRef>, name: &str, value: Value) -> &mut Self {
        self.ops.push(Op::Property {
            ty,
            node: node.into(),
            name: name.to_string(),
            value: Some(value),
        });
        self
    }

    /// Removes a property of an existing node (nothing if it has none).
    pub fn remove_property(&mut self, ty: u32, node: impl Into<NodeRef>, name: &str) -> &mut Self {
        self.ops.push(Op::Property {
            ty,
            node: node.into(),
            name: name.to_string(),
            value: None,
        });
        self
    }

    /// Deletes a node with its edges and properties. Its id is not reused;
    /// inserting its key again brings it back, bare.
    pub fn delete_node(&mut self, ty: u32, node: impl Into<NodeRef>) -> &mut Self {
        self.ops.push(Op::DeleteNode {
            ty,
            node: node.into(),
        });
        self
    }

    /// Number of operations queued.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// What a commit changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitInfo {
    /// Nodes created (or brought back after deletion).
    pub nodes_created: u64,
    /// Nodes deleted.
    pub nodes_deleted: u64,
    /// Edges whose presence or weight changed.
    pub edges_changed: u64,
}
