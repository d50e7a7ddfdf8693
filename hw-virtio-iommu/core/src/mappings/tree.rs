// SPDX-License-Identifier: GPL-2.0-or-later

//! A persistent B+tree from `u64` keys to small `Copy` values: the storage
//! of [`super::Mappings`].
//!
//! Persistent means copy-on-write: nodes are shared through `Arc`, so a
//! clone of a tree is one reference count increment, and a write copies a
//! node only if some clone still shares it (`Arc::make_mut`). With no clone
//! alive every write happens in place, as in an ordinary B+tree; with one,
//! a write copies the O(log n) nodes of its root-to-leaf path and shares
//! everything else. That is what lets the device publish an immutable
//! snapshot of a domain's mappings after every request for lock-free
//! translation ([`crate::view`]) at O(1) cost per snapshot.
//!
//! The price is paid by the first write after each snapshot: each branch
//! it copies takes a reference on every child (atomic increments, and as
//! many decrements when the old snapshot is dropped), which costs more
//! than the write itself: about 0.5 us at 10^3 mappings and 1-2 us at
//! 10^6, against 0.1-0.5 us with no snapshot alive
//! (`examples/mapping_scaling.rs`). Later writes to the same path before
//! the next snapshot copy nothing.
//!
//! Layout: entries live only in leaves, keys and values in separate arrays
//! (a search reads only the keys). A branch holds, for each child, the
//! smallest key under it, so the last entry at or before a key is found
//! by one descent without backtracking. Nodes are fixed arrays rather than
//! `Vec`s: one allocation per node and no capacity slack beyond the node's
//! free slots.
//!
//! Fill: a full node splits in the middle, except at the two edges of the
//! tree, where it keeps all its entries and the new one starts a node of
//! its own, so mapping ascending (or descending) IOVAs, as IOVA allocators
//! do, leaves full nodes behind. A removal that leaves a node less than
//! half full merges it with a sibling or takes entries from it.

use std::mem;
use std::sync::Arc;

/// Entries per leaf and children per branch, by measurement
/// (`examples/mapping_scaling.rs`, `examples/mapping_memory.rs`). Copying
/// a leaf for a write after a snapshot is a plain copy of its bytes, but
/// copying a branch takes a reference on each child (an atomic increment,
/// and a decrement when the snapshot goes), which dominates that write's
/// cost: 16-child branches make it about 15-20% cheaper than 32 at 10^6
/// mappings, for lookups about 10-20% slower (one more level).
#[cfg(not(test))]
pub(super) const LEAF_CAP: usize = 32;
#[cfg(not(test))]
pub(super) const BRANCH_CAP: usize = 16;
/// Unit tests use tiny nodes so that a few hundred entries make a deep
/// tree and every split, merge and rebalance is exercised; integration
/// tests and examples link the real sizes.
#[cfg(test)]
pub(super) const LEAF_CAP: usize = 5;
#[cfg(test)]
pub(super) const BRANCH_CAP: usize = 4;

/// Below this many entries (children) a node other than the root is
/// rebalanced after a removal.
const LEAF_MIN: usize = LEAF_CAP / 2;
const BRANCH_MIN: usize = BRANCH_CAP / 2;

/// Up to `N` keys, ascending, each with a value; the slots at and after
/// `len` hold `V::default()` (for branches: `None`, so they own nothing).
#[derive(Clone)]
struct Slots<V, const N: usize> {
    len: usize,
    keys: [u64; N],
    vals: [V; N],
}

type Leaf<V> = Slots<V, LEAF_CAP>;
type Branch<V> = Slots<Option<Arc<Node<V>>>, BRANCH_CAP>;

// The variants differ in size (for mappings the leaf is the larger), but a
// node is already behind an `Arc`: boxing a variant would only add a
// pointer chase per level.
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
enum Node<V> {
    Leaf(Leaf<V>),
    /// Each key is the smallest key in its child's subtree. Every child
    /// has the same height.
    Branch(Branch<V>),
}

impl<V: Default, const N: usize> Slots<V, N> {
    fn new() -> Self {
        Self {
            len: 0,
            keys: [0; N],
            vals: std::array::from_fn(|_| V::default()),
        }
    }

    fn keys(&self) -> &[u64] {
        self.keys.get(..self.len).unwrap_or_default()
    }

    fn vals(&self) -> &[V] {
        self.vals.get(..self.len).unwrap_or_default()
    }

    fn first_key(&self) -> Option<u64> {
        self.keys().first().copied()
    }

    /// How many keys are at most `key`. Counted over the whole node rather
    /// than by binary search: the count has no data-dependent branch and
    /// vectorizes, and measured faster (by a quarter) at every size.
    fn upper(&self, key: u64) -> usize {
        self.keys().iter().map(|&k| usize::from(k <= key)).sum()
    }

    /// How many keys are below `key`.
    fn lower(&self, key: u64) -> usize {
        self.keys().partition_point(|&k| k < key)
    }

    /// Put `(key, val)` at `pos`, moving the later entries up; gives `val`
    /// back if the node is full or `pos` is past the end.
    fn insert(&mut self, pos: usize, key: u64, val: V) -> Result<(), V> {
        let len = self.len;
        let (Some(keys), Some(vals)) = (self.keys.get_mut(pos..=len), self.vals.get_mut(pos..=len))
        else {
            return Err(val);
        };
        // The free slot at `len` comes round to `pos`.
        keys.rotate_right(1);
        vals.rotate_right(1);
        if let (Some(k), Some(v)) = (keys.first_mut(), vals.first_mut()) {
            *k = key;
            *v = val;
        }
        self.len = len.saturating_add(1);
        Ok(())
    }

    /// Take out the entry at `pos`, moving the later ones down.
    fn remove(&mut self, pos: usize) -> Option<(u64, V)> {
        let len = self.len;
        let (Some(keys), Some(vals)) = (self.keys.get_mut(pos..len), self.vals.get_mut(pos..len))
        else {
            return None;
        };
        if keys.is_empty() {
            return None;
        }
        keys.rotate_left(1);
        vals.rotate_left(1);
        let key = mem::take(keys.last_mut()?);
        let val = mem::take(vals.last_mut()?);
        self.len = len.saturating_sub(1);
        Some((key, val))
    }

    /// Move the entries from `at` on to a new node.
    fn split_off(&mut self, at: usize) -> Self {
        let mut right = Self::new();
        right.len = transfer(self, at, self.len, &mut right, 0);
        self.len = self.len.min(at);
        right
    }

    /// Move all of `right`'s entries after this node's (which must have
    /// room for them).
    fn append(&mut self, right: &mut Self) {
        let moved = transfer(right, 0, right.len, self, self.len);
        self.len = self.len.saturating_add(moved);
        right.len = 0;
    }

    /// Move the first `count` entries of `right` after this node's.
    fn take_front(&mut self, right: &mut Self, count: usize) {
        let moved = transfer(right, 0, count, self, self.len);
        self.len = self.len.saturating_add(moved);
        // The emptied slots go to the end of `right`.
        let len = right.len;
        if let (Some(keys), Some(vals)) = (right.keys.get_mut(..len), right.vals.get_mut(..len)) {
            let moved = moved.min(len);
            keys.rotate_left(moved);
            vals.rotate_left(moved);
        }
        right.len = len.saturating_sub(moved);
    }

    /// Move the last `count` entries of this node before `right`'s
    /// (which must have room for them).
    fn give_back(&mut self, right: &mut Self, count: usize) {
        let count = count.min(self.len);
        let len = right.len;
        let Some(end) = len.checked_add(count) else {
            return;
        };
        let (Some(keys), Some(vals)) = (right.keys.get_mut(..end), right.vals.get_mut(..end))
        else {
            return;
        };
        // Free slots to the front, then fill them.
        keys.rotate_right(count);
        vals.rotate_right(count);
        let from = self.len.saturating_sub(count);
        let moved = transfer(self, from, self.len, right, 0);
        self.len = from;
        right.len = len.saturating_add(moved);
    }
}

/// Move `src`'s entries `from..to` to `dst` from slot `at` on, leaving
/// defaults behind; how many moved.
fn transfer<V: Default, const N: usize>(
    src: &mut Slots<V, N>,
    from: usize,
    to: usize,
    dst: &mut Slots<V, N>,
    at: usize,
) -> usize {
    let (Some(src_keys), Some(src_vals)) = (src.keys.get_mut(from..to), src.vals.get_mut(from..to))
    else {
        return 0;
    };
    let (Some(dst_keys), Some(dst_vals)) = (dst.keys.get_mut(at..), dst.vals.get_mut(at..)) else {
        return 0;
    };
    let mut moved = 0usize;
    for ((dk, sk), (dv, sv)) in dst_keys
        .iter_mut()
        .zip(src_keys)
        .zip(dst_vals.iter_mut().zip(src_vals))
    {
        *dk = mem::take(sk);
        *dv = mem::take(sv);
        moved = moved.saturating_add(1);
    }
    moved
}

impl<V> Node<V> {
    fn len(&self) -> usize {
        match self {
            Self::Leaf(l) => l.len,
            Self::Branch(b) => b.len,
        }
    }

    fn min_len(&self) -> usize {
        match self {
            Self::Leaf(_) => LEAF_MIN,
            Self::Branch(_) => BRANCH_MIN,
        }
    }
}

impl<V: Default> Node<V> {
    fn first_key(&self) -> Option<u64> {
        match self {
            Self::Leaf(l) => l.first_key(),
            Self::Branch(b) => b.first_key(),
        }
    }
}

/// What an insert below a node did.
enum Insert<V> {
    Done,
    /// The node split: its new right sibling, with its smallest key.
    Split(u64, Arc<Node<V>>),
    /// The key was there already: nothing changed. (Also what a broken
    /// tree would answer; none is reachable.)
    Refused,
}

/// Insert into `node` at `pos`, splitting it if full. `left_edge` and
/// `right_edge` say whether the node is on the tree's leftmost or
/// rightmost path.
fn insert_split<V: Default, W, const N: usize>(
    node: &mut Slots<V, N>,
    pos: usize,
    key: u64,
    val: V,
    (left_edge, right_edge): (bool, bool),
    wrap: fn(Slots<V, N>) -> Node<W>,
) -> Insert<W> {
    let Err(val) = node.insert(pos, key, val) else {
        return Insert::Done;
    };
    // Full. An append at the right edge leaves this node full and starts
    // a new one, so ascending fills leave full nodes; at the left edge, a
    // prepend does the same the other way round (in a branch the new
    // child comes at 1: after the leftmost one, which kept the prepended
    // key). Elsewhere both halves keep room.
    let at = if pos >= N && right_edge {
        N
    } else if pos <= 1 && left_edge {
        pos
    } else {
        N / 2
    };
    let mut right = node.split_off(at);
    let inserted = if pos < at || at == 0 {
        node.insert(pos, key, val)
    } else {
        right.insert(pos.saturating_sub(at), key, val)
    };
    match (inserted, right.first_key()) {
        (Ok(()), Some(first)) => Insert::Split(first, Arc::new(wrap(right))),
        // Unreachable: half a full node has room and `right` is not empty.
        _ => Insert::Refused,
    }
}

fn insert_rec<V: Clone + Default>(
    node: &mut Arc<Node<V>>,
    key: u64,
    val: V,
    edges: (bool, bool),
) -> Insert<V> {
    match Arc::make_mut(node) {
        Node::Leaf(leaf) => {
            let pos = leaf.upper(key);
            let before = pos.checked_sub(1).and_then(|p| leaf.keys().get(p));
            if before == Some(&key) {
                return Insert::Refused;
            }
            insert_split(leaf, pos, key, val, edges, Node::Leaf)
        }
        Node::Branch(branch) => {
            // A key below every other goes to the first child.
            let i = branch.upper(key).saturating_sub(1);
            let last = branch.len.saturating_sub(1);
            let Some(Some(child)) = branch.vals.get_mut(i) else {
                return Insert::Refused;
            };
            let below = insert_rec(child, key, val, (edges.0 && i == 0, edges.1 && i == last));
            // The child's smallest key may be the new one.
            if let (Some(first), Some(k)) = (child.first_key(), branch.keys.get_mut(i)) {
                *k = first;
            }
            match below {
                Insert::Split(first, right) => insert_split(
                    branch,
                    i.saturating_add(1),
                    first,
                    Some(right),
                    edges,
                    Node::Branch,
                ),
                other => other,
            }
        }
    }
}

/// Remove `key` from under `node`. Copies the path down to where the key
/// would be even if it is absent: callers remove keys they have found.
fn remove_rec<V: Clone + Default>(node: &mut Arc<Node<V>>, key: u64) -> Option<V> {
    match Arc::make_mut(node) {
        Node::Leaf(leaf) => {
            let pos = leaf.upper(key).checked_sub(1)?;
            if leaf.keys().get(pos) != Some(&key) {
                return None;
            }
            leaf.remove(pos).map(|(_, v)| v)
        }
        Node::Branch(branch) => {
            let i = branch.upper(key).checked_sub(1)?;
            let child = branch.vals.get_mut(i)?.as_mut()?;
            let val = remove_rec(child, key)?;
            let len = child.len();
            let underfull = len < child.min_len();
            if let (Some(first), Some(k)) = (child.first_key(), branch.keys.get_mut(i)) {
                *k = first;
            }
            if len == 0 {
                // Emptied (a node an edge split left with one entry, which
                // may be an only child): drop it. Merging would move
                // nothing, and an only child has no sibling; if this
                // branch empties, the level above drops it in turn.
                branch.remove(i);
            } else if underfull {
                rebalance(branch, i);
            }
            Some(val)
        }
    }
}

/// Child `i` of `branch` is underfull: merge it with a sibling if both fit
/// in one node, else even out their entries.
fn rebalance<V: Clone + Default>(branch: &mut Branch<V>, i: usize) {
    let (left, right) = match i.checked_sub(1) {
        Some(l) => (l, i),
        None => (i, i.saturating_add(1)),
    };
    if right >= branch.len {
        // An only child (of the root, or of a branch an edge split left
        // with one): nothing to balance with here. The tree shrinks a
        // root with one child, and the level above rebalances a branch.
        return;
    }
    let Some((head, tail)) = branch.vals.split_at_mut_checked(right) else {
        return;
    };
    let (Some(Some(l)), Some(Some(r))) = (head.get_mut(left), tail.first_mut()) else {
        return;
    };
    let merged = match (Arc::make_mut(l), Arc::make_mut(r)) {
        (Node::Leaf(l), Node::Leaf(r)) => balance(l, r),
        (Node::Branch(l), Node::Branch(r)) => balance(l, r),
        // Unreachable: siblings have the same height.
        _ => return,
    };
    if merged {
        branch.remove(right);
    } else if let (Some(first), Some(k)) = (r.first_key(), branch.keys.get_mut(right)) {
        // Its first entries changed.
        *k = first;
    }
}

/// Merge `right` into `left` if they fit in one node (true), else share
/// their entries evenly.
fn balance<V: Default, const N: usize>(left: &mut Slots<V, N>, right: &mut Slots<V, N>) -> bool {
    let total = left.len.saturating_add(right.len);
    if total <= N {
        left.append(right);
        return true;
    }
    let half = total / 2;
    if let Some(count) = half.checked_sub(left.len) {
        left.take_front(right, count);
    } else {
        left.give_back(right, left.len.saturating_sub(half));
    }
    false
}

/// An ordered map from `u64` keys to values, cheap to clone (see the
/// module documentation).
#[derive(Clone)]
pub(super) struct Tree<V> {
    root: Option<Arc<Node<V>>>,
    len: usize,
}

impl<V> Default for Tree<V> {
    fn default() -> Self {
        Self { root: None, len: 0 }
    }
}

impl<V: Copy + Default> Tree<V> {
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// The entry with the largest key at most `key`.
    pub(super) fn last_at_or_before(&self, key: u64) -> Option<(u64, V)> {
        let mut node = self.root.as_deref()?;
        loop {
            match node {
                Node::Branch(b) => {
                    // Each branch key is its child's smallest: that child
                    // holds the answer, and none if no key is that small.
                    let i = b.upper(key).checked_sub(1)?;
                    node = b.vals().get(i)?.as_deref()?;
                }
                Node::Leaf(l) => {
                    let i = l.upper(key).checked_sub(1)?;
                    return Some((*l.keys().get(i)?, *l.vals().get(i)?));
                }
            }
        }
    }

    /// Add `(key, val)`; `false` (and nothing changes) if `key` is there.
    pub(super) fn insert(&mut self, key: u64, val: V) -> bool {
        let Some(root) = self.root.as_mut() else {
            let mut leaf = Leaf::new();
            if leaf.insert(0, key, val).is_err() {
                return false;
            }
            self.root = Some(Arc::new(Node::Leaf(leaf)));
            self.len = 1;
            return true;
        };
        match insert_rec(root, key, val, (true, true)) {
            Insert::Refused => return false,
            Insert::Done => {}
            Insert::Split(first, right) => {
                // A new root over the old one and its new sibling.
                let old = self.root.take();
                let old_first = old.as_deref().and_then(Node::first_key).unwrap_or(0);
                let mut top = Branch::new();
                // An empty branch has room for both.
                let _ = top.insert(0, old_first, old);
                let _ = top.insert(1, first, Some(right));
                self.root = Some(Arc::new(Node::Branch(top)));
            }
        }
        self.len = self.len.saturating_add(1);
        true
    }

    /// Remove the entry of `key`. Copies the path to where it would be
    /// even if absent: meant for keys the caller has found.
    pub(super) fn remove(&mut self, key: u64) -> Option<V> {
        let val = remove_rec(self.root.as_mut()?, key)?;
        self.len = self.len.saturating_sub(1);
        // Drop a root left with one child (a merge below took the other),
        // or with no entry.
        loop {
            match self.root.as_deref() {
                Some(Node::Branch(b)) if b.len <= 1 => {
                    self.root = b.vals.first().cloned().flatten();
                }
                Some(Node::Leaf(l)) if l.len == 0 => self.root = None,
                _ => break,
            }
        }
        Some(val)
    }

    /// The entries in key order, from the first key at or after `from`.
    pub(super) fn iter_from(&self, from: u64) -> Iter<'_, V> {
        Iter::new(self.root.as_deref(), from)
    }
}

/// An in-order walk: the branches on the path to the current leaf, each
/// with the index of the child being walked.
pub(super) struct Iter<'a, V> {
    stack: Vec<(&'a Branch<V>, usize)>,
    leaf: Option<&'a Leaf<V>>,
    pos: usize,
}

impl<'a, V: Copy + Default> Iter<'a, V> {
    fn new(root: Option<&'a Node<V>>, from: u64) -> Self {
        let mut it = Self {
            stack: Vec::new(),
            leaf: None,
            pos: 0,
        };
        let mut node = root;
        while let Some(n) = node {
            match n {
                Node::Branch(b) => {
                    let i = b.upper(from).saturating_sub(1);
                    it.stack.push((b, i));
                    node = b.vals().get(i).and_then(Option::as_deref);
                }
                Node::Leaf(l) => {
                    it.leaf = Some(l);
                    it.pos = l.lower(from);
                    node = None;
                }
            }
        }
        it
    }

    /// Go down the leftmost path of `node`.
    fn descend(&mut self, mut node: &'a Node<V>) {
        loop {
            match node {
                Node::Branch(b) => {
                    self.stack.push((b, 0));
                    match b.vals().first().and_then(Option::as_deref) {
                        Some(child) => node = child,
                        None => return,
                    }
                }
                Node::Leaf(l) => {
                    self.leaf = Some(l);
                    self.pos = 0;
                    return;
                }
            }
        }
    }
}

impl<V: Copy + Default> Iterator for Iter<'_, V> {
    type Item = (u64, V);

    fn next(&mut self) -> Option<(u64, V)> {
        loop {
            if let Some(leaf) = self.leaf {
                if let (Some(&k), Some(&v)) = (leaf.keys().get(self.pos), leaf.vals().get(self.pos))
                {
                    self.pos = self.pos.saturating_add(1);
                    return Some((k, v));
                }
                self.leaf = None;
            }
            // The next child of the deepest branch that has one left.
            let top = self.stack.last_mut()?;
            top.1 = top.1.saturating_add(1);
            let (branch, i) = *top;
            match branch.vals().get(i).and_then(Option::as_deref) {
                Some(child) => self.descend(child),
                None => {
                    self.stack.pop();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl<V: Copy + Default + PartialEq> Tree<V> {
        /// Check every structural invariant; the number of nodes.
        pub(crate) fn check(&self) -> usize {
            let Some(root) = self.root.as_deref() else {
                assert_eq!(self.len, 0);
                return 0;
            };
            let mut leaf_depth = None;
            let mut keys = Vec::new();
            let nodes = check_node(root, 0, true, &mut leaf_depth, &mut keys);
            assert_eq!(keys.len(), self.len);
            assert!(keys.windows(2).all(|w| w[0] < w[1]), "keys ascending");
            nodes
        }
    }

    fn check_node<V: Copy + Default + PartialEq>(
        node: &Node<V>,
        depth: usize,
        root: bool,
        leaf_depth: &mut Option<usize>,
        keys: &mut Vec<u64>,
    ) -> usize {
        assert!(node.len() >= 1, "no empty node");
        if root {
            if let Node::Branch(b) = node {
                assert!(b.len >= 2, "a root branch has two children");
            }
        }
        match node {
            Node::Leaf(l) => {
                assert!(l.len <= LEAF_CAP);
                assert_eq!(*leaf_depth.get_or_insert(depth), depth, "leaves level");
                assert!(l.vals[l.len..].iter().all(|v| *v == V::default()));
                assert!(l.keys[l.len..].iter().all(|&k| k == 0));
                keys.extend_from_slice(l.keys());
                1
            }
            Node::Branch(b) => {
                assert!(b.len <= BRANCH_CAP);
                assert!(
                    b.vals[b.len..].iter().all(Option::is_none),
                    "free slots own nothing"
                );
                let mut nodes = 1;
                for (k, child) in b.keys().iter().zip(b.vals()) {
                    let child = child.as_deref().expect("a child in every used slot");
                    assert_eq!(
                        child.first_key(),
                        Some(*k),
                        "branch key is the child's first"
                    );
                    nodes += check_node(child, depth + 1, false, leaf_depth, keys);
                }
                nodes
            }
        }
    }

    fn keys(t: &Tree<u64>) -> Vec<u64> {
        t.iter_from(0).map(|(k, _)| k).collect()
    }

    #[test]
    fn ascending_and_descending_fills_leave_full_leaves() {
        let n = (LEAF_CAP * BRANCH_CAP * 3) as u64;
        let mut up = Tree::default();
        let mut down = Tree::default();
        for k in 0..n {
            assert!(up.insert(k, k));
            assert!(down.insert(n - k, k));
        }
        let leaves = (n as usize).div_ceil(LEAF_CAP);
        let branches = leaves.div_ceil(BRANCH_CAP) + 1;
        assert!(up.check() <= leaves + branches + 1);
        assert!(down.check() <= leaves + branches + 1);
        assert_eq!(keys(&up), (0..n).collect::<Vec<_>>());
        assert_eq!(keys(&down), (1..=n).collect::<Vec<_>>());
    }

    #[test]
    fn duplicate_keys_are_refused() {
        let mut t = Tree::default();
        for k in 0..200u64 {
            assert!(t.insert(k * 2, k));
        }
        for k in 0..200u64 {
            assert!(!t.insert(k * 2, 7));
        }
        assert_eq!(t.len(), 200);
        t.check();
    }

    #[test]
    fn removing_everything_in_any_order_shrinks_to_nothing() {
        for stride in [1u64, 7, 31, 997] {
            let n = 5_000u64;
            let mut t = Tree::default();
            for k in 0..n {
                t.insert((k * stride) % n, k);
            }
            t.check();
            for k in 0..n {
                let key = (k * 13) % n;
                assert!(t.remove(key).is_some(), "{key}");
                assert!(t.remove(key).is_none());
                if k % 500 == 0 {
                    t.check();
                }
            }
            assert!(t.root.is_none());
            assert_eq!(t.len(), 0);
        }
    }

    #[test]
    fn iter_from_starts_at_the_first_key_not_below() {
        let mut t = Tree::default();
        for k in 0..3_000u64 {
            t.insert(k * 10, k);
        }
        for from in [0, 1, 9, 10, 11, 12_345, 29_990, 29_991, u64::MAX] {
            let got: Vec<u64> = t.iter_from(from).map(|(k, _)| k).collect();
            let want: Vec<u64> = (0..3_000u64)
                .map(|k| k * 10)
                .filter(|&k| k >= from)
                .collect();
            assert_eq!(got, want, "from {from}");
        }
    }

    #[test]
    fn clones_share_until_written() {
        let mut t = Tree::default();
        for k in 0..10_000u64 {
            t.insert(k, k);
        }
        let snapshot = t.clone();
        let root = |t: &Tree<u64>| Arc::as_ptr(t.root.as_ref().unwrap());
        assert_eq!(root(&t), root(&snapshot));
        t.insert(20_000, 0);
        t.remove(5);
        assert_ne!(root(&t), root(&snapshot));
        assert_eq!(keys(&snapshot), (0..10_000).collect::<Vec<_>>());
        snapshot.check();
        t.check();
        // Only the written paths were copied: most leaves are still shared.
        let (Node::Branch(a), Node::Branch(b)) = (
            &**t.root.as_ref().unwrap(),
            &**snapshot.root.as_ref().unwrap(),
        ) else {
            panic!("10^4 entries need branches");
        };
        let shared = a
            .vals()
            .iter()
            .zip(b.vals())
            .filter(|(x, y)| Arc::ptr_eq(x.as_ref().unwrap(), y.as_ref().unwrap()))
            .count();
        assert!(shared + 2 >= a.len.min(b.len), "{shared} of {}", a.len);
    }
}
