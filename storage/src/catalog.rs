//! The catalog: schema, node counts, the current base segments and bucket
//! segments. One rkyv record under the sled key `C`, rewritten by every commit
//! that changes it, so a commit's catalog change is atomic with its data.

use rkyv::{Archive, Deserialize, Serialize};

use crate::error::{CorruptionError, Result, StorageError};

/// Version of the on-disk format this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// A node type: its name and how many ids it has handed out.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct NodeTypeDef {
    /// Type name, e.g. `User`.
    pub name: String,
    /// Number of nodes; ids are `0..count`.
    pub count: u32,
}

/// A relation type and the node types it joins.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct RelationDef {
    /// Relation name, e.g. `Follows`.
    pub name: String,
    /// Source node type id.
    pub src: u32,
    /// Destination node type id.
    pub dst: u32,
}

/// A segment file and what its bytes must hash to.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct SegmentRef {
    /// File name inside the database directory.
    pub file: String,
    /// Length in bytes.
    pub len: u64,
    /// CRC-32 (IEEE) of the whole file, as `crc32fast` computes it.
    pub crc: u32,
}

/// Edge buckets built for one partition count.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct BucketRef {
    /// Number of partitions P per node type.
    pub partitions: u32,
    /// The catalog's `edge_version` the buckets were built at.
    pub edge_version: u64,
    /// The bucket segment.
    pub segment: SegmentRef,
}

/// Everything the database knows about itself apart from data.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalog {
    /// Node types; the index is the type id.
    pub node_types: Vec<NodeTypeDef>,
    /// Relation types; the index is the relation id.
    pub relations: Vec<RelationDef>,
    /// Bumped by every commit that changes an edge; buckets built at another
    /// version are stale.
    pub edge_version: u64,
    /// Generation of the base segments (0: no base yet).
    pub generation: u64,
    /// Base segments: `[nodes, adjacency]`, or empty at generation 0.
    pub base: Vec<SegmentRef>,
    /// Number of nodes per type held in the base segments.
    pub base_counts: Vec<u32>,
    /// Bucket segments, at most one per partition count.
    pub buckets: Vec<BucketRef>,
    /// Stored models (embeddings), by name.
    pub models: Vec<ModelRef>,
    /// Counter that makes model file names unique.
    pub model_seq: u64,
}

/// A stored model: its name, the engine's settings, progress and metrics
/// (JSON text that storage does not interpret) and its parts, each a segment
/// of `f32` arrays saved on its own (an embedding partition, say), so that a
/// checkpoint rewrites only the parts that changed.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ModelRef {
    /// Model name, unique in the database.
    pub name: String,
    /// How it was trained (engine-defined JSON).
    pub settings: String,
    /// Where training stands (engine-defined JSON; empty when finished).
    pub progress: String,
    /// Latest evaluation (engine-defined JSON; empty when none).
    pub metrics: String,
    /// (part key, segment), sorted by key.
    pub parts: Vec<(String, SegmentRef)>,
}

/// Ends a catalog record, followed by the CRC-32 of the archive before it.
const CHECKSUM_TAG: &[u8; 4] = b"QCRC";

impl Catalog {
    /// The rkyv archive, then `QCRC` and its CRC-32 (little-endian).
    pub(crate) fn encode(&self) -> Vec<u8> {
        // Serializing plain owned data into memory cannot fail.
        let mut out = rkyv::to_bytes::<rkyv::rancor::Error>(self)
            .map(|v| v.to_vec())
            .unwrap_or_default();
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(CHECKSUM_TAG);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes a record: a checksummed one (every record written since the
    /// checksum was added), or a bare archive written before.
    pub(crate) fn decode(bytes: &[u8], file: &std::path::Path) -> Result<Self> {
        let n = bytes.len();
        let archive = match n.checked_sub(8).map(|at| bytes.split_at(at)) {
            Some((archive, trailer)) if &trailer[..4] == CHECKSUM_TAG => {
                let stored = u32::from_le_bytes([trailer[4], trailer[5], trailer[6], trailer[7]]);
                let crc = crc32fast::hash(archive);
                if crc != stored {
                    return Err(CorruptionError::new(
                        file,
                        format!("catalog record checksum {crc:08x}, stored {stored:08x}"),
                    )
                    .into());
                }
                archive
            }
            _ => bytes,
        };
        let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(archive.len());
        aligned.extend_from_slice(archive);
        let c: Catalog = rkyv::from_bytes::<Catalog, rkyv::rancor::Error>(&aligned)
            .map_err(|e| CorruptionError::new(file, format!("catalog record: {e}")))?;
        c.validate().map_err(|m| CorruptionError::new(file, m))?;
        Ok(c)
    }

    /// Cross-field invariants that decoding alone cannot check.
    fn validate(&self) -> std::result::Result<(), String> {
        let n = self.node_types.len() as u32;
        for r in &self.relations {
            if r.src >= n || r.dst >= n {
                return Err(format!("relation `{}` refers to a missing node type", r.name));
            }
        }
        if (self.generation == 0) != self.base.is_empty() || !matches!(self.base.len(), 0 | 2) {
            return Err("base segment list does not match generation".into());
        }
        if self.base_counts.len() > self.node_types.len()
            || self
                .base_counts
                .iter()
                .zip(&self.node_types)
                .any(|(b, t)| *b > t.count)
        {
            return Err("base node counts exceed type counts".into());
        }
        Ok(())
    }

    /// Type id of a node type name.
    pub fn node_type(&self, name: &str) -> Result<u32> {
        self.node_types
            .iter()
            .position(|t| t.name == name)
            .map(|i| i as u32)
            .ok_or_else(|| StorageError::UnknownNodeType(name.to_string()))
    }

    /// Relation id of a relation name.
    pub fn relation(&self, name: &str) -> Result<u32> {
        self.relations
            .iter()
            .position(|r| r.name == name)
            .map(|i| i as u32)
            .ok_or_else(|| StorageError::UnknownRelation(name.to_string()))
    }

    /// Nodes of type `ty` held in the base segments.
    pub(crate) fn base_count(&self, ty: u32) -> u32 {
        self.base_counts.get(ty as usize).copied().unwrap_or(0)
    }

    /// Name of a node type id (which the caller got from this catalog).
    pub fn type_name(&self, ty: u32) -> &str {
        self.node_types.get(ty as usize).map_or("?", |t| t.name.as_str())
    }
}

/// A property value stored on a node.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub enum Value {
    /// UTF-8 text.
    Str(String),
    /// 64-bit signed integer.
    Int(i64),
    /// 64-bit float.
    Float(f64),
    /// Boolean.
    Bool(bool),
}

impl Value {
    pub(crate) fn encode(&self) -> Vec<u8> {
        rkyv::to_bytes::<rkyv::rancor::Error>(self)
            .map(|v| v.to_vec())
            .unwrap_or_default()
    }

    pub(crate) fn decode(bytes: &[u8], file: &std::path::Path) -> Result<Self> {
        let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(bytes.len());
        aligned.extend_from_slice(bytes);
        rkyv::from_bytes::<Value, rkyv::rancor::Error>(&aligned)
            .map_err(|e| CorruptionError::new(file, format!("property record: {e}")).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_round_trips_and_rejects_garbage() {
        let c = Catalog {
            node_types: vec![NodeTypeDef {
                name: "User".into(),
                count: 3,
            }],
            relations: vec![RelationDef {
                name: "Follows".into(),
                src: 0,
                dst: 0,
            }],
            ..Default::default()
        };
        let p = std::path::Path::new("x");
        assert_eq!(Catalog::decode(&c.encode(), p).unwrap(), c);
        // Every change of every byte is caught (the checksum, or, where the
        // tag itself is hit, the archive's validation).
        let good = c.encode();
        for at in 0..good.len() {
            for flip in [0x01, 0x10, 0x7f, 0xff] {
                let mut bad = good.clone();
                bad[at] ^= flip;
                assert!(Catalog::decode(&bad, p).is_err(), "byte {at} ^ {flip:#x} decoded");
            }
        }
        // Records written before the checksum still decode.
        let bare = &good[..good.len() - 8];
        assert_eq!(Catalog::decode(bare, p).unwrap(), c);
        assert!(Catalog::decode(b"xyz", p).is_err());
        let v = Value::Str("hi".into());
        assert_eq!(Value::decode(&v.encode(), p).unwrap(), v);
    }
}
