//! The one place where sled keys are encoded. Integers are big-endian so that
//! sled's byte order is numeric order; every key starts with a one-byte tag.
//!
//! | tag | key                                   | value                          |
//! |-----|---------------------------------------|--------------------------------|
//! | `F` | `F`                                   | format version, u32 BE         |
//! | `C` | `C`                                   | the catalog, rkyv              |
//! | `i` | `i` type:u32 id:u32                   | key bytes (delta nodes)        |
//! | `e` | `e` rel:u32 src:u32 dst:u32           | edge state (delta edges)       |
//! | `p` | `p` type:u32 id:u32 name-bytes        | property value, rkyv           |
//! | `x` | `x` type:u32 id:u32                   | empty (the node is deleted)    |

pub(crate) const FORMAT: &[u8] = b"F";
pub(crate) const CATALOG: &[u8] = b"C";
pub(crate) const NODE_ID: u8 = b'i';
pub(crate) const EDGE: u8 = b'e';
pub(crate) const PROPERTY: u8 = b'p';
pub(crate) const DELETED: u8 = b'x';

fn with_tag(tag: u8, capacity: usize) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + capacity);
    k.push(tag);
    k
}

pub(crate) fn u32_value(v: u32) -> [u8; 4] {
    v.to_be_bytes()
}

pub(crate) fn read_u32(b: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(b.try_into().ok()?))
}

pub(crate) fn node_id(ty: u32, id: u32) -> Vec<u8> {
    let mut k = with_tag(NODE_ID, 8);
    k.extend_from_slice(&ty.to_be_bytes());
    k.extend_from_slice(&id.to_be_bytes());
    k
}

/// The tombstone of a deleted node.
pub(crate) fn deleted(ty: u32, id: u32) -> Vec<u8> {
    let mut k = node_id(ty, id);
    k[0] = DELETED;
    k
}

/// Decodes an `i` or `x` key into (type, id).
pub(crate) fn parse_node_id(k: &[u8]) -> Option<(u32, u32)> {
    if k.len() != 9 || (k[0] != NODE_ID && k[0] != DELETED) {
        return None;
    }
    Some((read_u32(&k[1..5])?, read_u32(&k[5..9])?))
}

pub(crate) fn edge(rel: u32, src: u32, dst: u32) -> Vec<u8> {
    let mut k = with_tag(EDGE, 12);
    k.extend_from_slice(&rel.to_be_bytes());
    k.extend_from_slice(&src.to_be_bytes());
    k.extend_from_slice(&dst.to_be_bytes());
    k
}

/// Decodes an `e` key into (rel, src, dst).
pub(crate) fn parse_edge(k: &[u8]) -> Option<(u32, u32, u32)> {
    if k.len() != 13 || k[0] != EDGE {
        return None;
    }
    Some((read_u32(&k[1..5])?, read_u32(&k[5..9])?, read_u32(&k[9..13])?))
}

/// Value of an `e` key: `1` + weight f32 BE for a present edge, `0` for a
/// deleted base edge.
pub(crate) fn edge_value(weight: Option<f32>) -> Vec<u8> {
    match weight {
        Some(w) => {
            let mut v = vec![1];
            v.extend_from_slice(&w.to_be_bytes());
            v
        }
        None => vec![0],
    }
}

/// Decodes an `e` value: `Some(Some(w))` present, `Some(None)` deleted.
pub(crate) fn parse_edge_value(v: &[u8]) -> Option<Option<f32>> {
    match v {
        [0] => Some(None),
        [1, w @ ..] => Some(Some(f32::from_be_bytes(w.try_into().ok()?))),
        _ => None,
    }
}

pub(crate) fn property(ty: u32, id: u32, name: &str) -> Vec<u8> {
    let mut k = with_tag(PROPERTY, 8 + name.len());
    k.extend_from_slice(&ty.to_be_bytes());
    k.extend_from_slice(&id.to_be_bytes());
    k.extend_from_slice(name.as_bytes());
    k
}

/// Prefix of all properties of one node.
pub(crate) fn property_prefix(ty: u32, id: u32) -> Vec<u8> {
    property(ty, id, "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_sort_numerically() {
        assert_eq!(parse_edge(&edge(1, 2, 3)), Some((1, 2, 3)));
        assert_eq!(parse_node_id(&node_id(7, 9)), Some((7, 9)));
        assert!(edge(0, 1, 255) < edge(0, 1, 256));
        assert_eq!(parse_edge_value(&edge_value(Some(2.5))), Some(Some(2.5)));
        assert_eq!(parse_edge_value(&edge_value(None)), Some(None));
        assert_eq!(parse_edge_value(&[2]), None);
    }
}
